package chat

import (
	"fmt"
	"unicode/utf8"
)

// MaxEmojiBytes bounds a reaction: the longest emoji in use (a family or a
// subdivision flag, a few joined code points) fits with room to spare.
const MaxEmojiBytes = 32

// checkEmoji accepts exactly one emoji grapheme: a pictograph with its
// optional presentation selector, skin tone and tag sequence, several
// joined by ZWJ; a flag (two regional indicators); or a keycap. Anything
// else (text, two emoji, a stray modifier) is refused with the reason.
func checkEmoji(s string) error {
	switch {
	case s == "":
		return Errorf(CodeInvalid, "emoji must not be empty")
	case len(s) > MaxEmojiBytes:
		return Errorf(CodeInvalid, "emoji is %d bytes; the limit is %d", len(s), MaxEmojiBytes)
	case !utf8.ValidString(s):
		return Errorf(CodeInvalid, "emoji is not valid UTF-8")
	}
	rs := []rune(s)
	if !oneEmoji(rs) {
		return Errorf(CodeInvalid, "emoji must be a single emoji, got %s", quoteRunes(rs))
	}
	return nil
}

func oneEmoji(rs []rune) bool {
	switch r := rs[0]; {
	case isRegional(r): // a flag: exactly two indicators
		return len(rs) == 2 && isRegional(rs[1])
	case r == '#' || r == '*' || (r >= '0' && r <= '9'): // a keycap
		rest := rs[1:]
		return (len(rest) == 2 && rest[0] == 0xFE0F && rest[1] == 0x20E3) || (len(rest) == 1 && rest[0] == 0x20E3)
	}
	for i := 0; ; {
		if i >= len(rs) || !isPictograph(rs[i]) {
			return false
		}
		i++
		if i < len(rs) && rs[i] == 0xFE0F {
			i++
		}
		if i < len(rs) && rs[i] >= 0x1F3FB && rs[i] <= 0x1F3FF { // skin tone
			i++
		}
		if i < len(rs) && rs[i] >= 0xE0020 && rs[i] <= 0xE007E { // a subdivision flag's tags
			for i < len(rs) && rs[i] >= 0xE0020 && rs[i] <= 0xE007E {
				i++
			}
			if i >= len(rs) || rs[i] != 0xE007F {
				return false
			}
			i++
		}
		if i == len(rs) {
			return true
		}
		if rs[i] != 0x200D { // only a joiner may follow
			return false
		}
		i++
	}
}

func isRegional(r rune) bool { return r >= 0x1F1E6 && r <= 0x1F1FF }

// isPictograph reports whether r is in the blocks emoji are drawn from.
// It is generous within them: the point is one grapheme of emoji, not a
// census of which code points have glyphs.
func isPictograph(r rune) bool {
	switch {
	case r >= 0x1F3FB && r <= 0x1F3FF, isRegional(r): // modifiers, flag halves: never alone
		return false
	case r >= 0x1F000 && r <= 0x1FAFF, // symbols and pictographs, emoticons, transport, ...
		r >= 0x2600 && r <= 0x27BF, // miscellaneous symbols, dingbats
		r >= 0x2300 && r <= 0x23FF, // technical (⌚, ⏰)
		r >= 0x2B00 && r <= 0x2BFF, // arrows (⭐, ⬆)
		r >= 0x2190 && r <= 0x21FF, // arrows (↔)
		r == 0x00A9, r == 0x00AE, r == 0x203C, r == 0x2049, r == 0x2122, r == 0x2139,
		r == 0x24C2, r == 0x25AA, r == 0x25AB, r == 0x25B6, r == 0x25C0, r >= 0x25FB && r <= 0x25FE,
		r == 0x3030, r == 0x303D, r == 0x3297, r == 0x3299:
		return true
	}
	return false
}

// quoteRunes shows what was sent, code points included, so that an
// invisible character in the refusal is visible.
func quoteRunes(rs []rune) string {
	out := fmt.Sprintf("%q (", string(rs))
	for i, r := range rs {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("U+%04X", r)
	}
	return out + ")"
}
