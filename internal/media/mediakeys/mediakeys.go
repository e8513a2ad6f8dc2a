// Package mediakeys names the object key prefixes of the media bucket. The
// app writes under them and the stack grants access and expires objects by
// them, so both import these names.
package mediakeys

const (
	// Prefix holds every media object: chat/{userId}/… (verified media and
	// thumbnails) and Upload.
	Prefix = "chat/"
	// Upload is where presigned PUTs land: chat/upload/{userId}/…. No
	// presigned PUT is ever issued outside it, so once an upload is
	// verified and copied out (to the same key without "upload/") the
	// checked bytes cannot be swapped by anyone holding the upload's URL.
	// The copy's source is then deleted; what is left (an upload never
	// sent) expires with the bucket's lifecycle rule.
	Upload = Prefix + "upload/"
)
