package chat

import (
	"context"
	"regexp"
	"strings"
	"unicode"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/internal/push"
)

// Device registration is the one other synchronous write at the edge: a
// device token is not chat state (no conversation's history holds it, and
// replaying events must never bring back a token the provider refused),
// and the app needs to know at once that its token is registered.

// DeviceInput registers a device for push notifications.
type DeviceInput struct {
	Platform   string  `json:"platform"`
	Token      string  `json:"token"`
	AppVersion *string `json:"app_version,omitempty"`
}

// DeviceView is a registered device.
type DeviceView struct {
	Platform   string  `json:"platform"`
	Token      string  `json:"token"`
	AppVersion *string `json:"app_version,omitempty"`
}

const (
	maxTokenLen      = 4096
	maxAppVersionLen = 64
)

var (
	expoToken = regexp.MustCompile(`^Expo(nent)?PushToken\[[A-Za-z0-9_\-]{1,256}\]$`)
	apnsToken = regexp.MustCompile(`^([0-9a-fA-F]{2}){32,100}$`)
	// FCM registration tokens are URL-safe base64 with ':' separators.
	fcmToken = regexp.MustCompile(`^[A-Za-z0-9_\-:.]+$`)
)

// validDevice checks a registration, saying what is wrong.
func validDevice(in DeviceInput) error {
	switch in.Platform {
	case push.PlatformExpo:
		if !expoToken.MatchString(in.Token) {
			return Errorf(CodeInvalid, "an expo token looks like ExponentPushToken[…]")
		}
	case push.PlatformIOS:
		if !apnsToken.MatchString(in.Token) {
			return Errorf(CodeInvalid, "an ios token is the APNs device token in hexadecimal (64 or more digits)")
		}
	case push.PlatformAndroid:
		if len(in.Token) > maxTokenLen || !fcmToken.MatchString(in.Token) {
			return Errorf(CodeInvalid, "an android token is an FCM registration token (letters, digits, '-', '_', ':', '.'; at most %d)", maxTokenLen)
		}
	case "":
		return Errorf(CodeInvalid, "platform is required: ios, android or expo")
	default:
		return Errorf(CodeInvalid, "platform %q is not one of ios, android, expo", in.Platform)
	}
	if v := in.AppVersion; v != nil {
		if len(*v) > maxAppVersionLen || strings.IndexFunc(*v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return Errorf(CodeInvalid, "app_version must be at most %d printable characters", maxAppVersionLen)
		}
	}
	return nil
}

// RegisterDevice registers the caller's device; registering again is a
// no-op, and a token another user registered before moves to the caller.
func (s *Service) RegisterDevice(ctx context.Context, userID int64, in DeviceInput) (DeviceView, error) {
	if err := validDevice(in); err != nil {
		return DeviceView{}, err
	}
	if err := s.allowWrite(userID, WriteSettings, "device registrations"); err != nil {
		return DeviceView{}, err
	}
	if err := s.q.UpsertPushDevice(ctx, db.UpsertPushDeviceParams{Token: in.Token, UserID: userID, Platform: in.Platform, AppVersion: in.AppVersion}); err != nil {
		return DeviceView{}, unavailable("the database", err)
	}
	return DeviceView(in), nil
}

// UnregisterDevice removes one of the caller's devices; a token that is
// not theirs is not found.
func (s *Service) UnregisterDevice(ctx context.Context, userID int64, token string) error {
	if err := s.allowWrite(userID, WriteSettings, "device registrations"); err != nil {
		return err
	}
	n, err := s.q.DeletePushDevice(ctx, db.DeletePushDeviceParams{Token: token, UserID: userID})
	if err != nil {
		return unavailable("the database", err)
	}
	if n == 0 {
		return Errorf(CodeNotFound, "no such device of yours")
	}
	return nil
}
