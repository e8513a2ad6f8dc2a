package chat

import (
	"strings"
	"testing"
)

func TestCheckEmoji(t *testing.T) {
	for _, ok := range []string{
		"👍", "👍🏽", "❤️", "❤", "😂", "🎉", "🇧🇷", "1️⃣", "#⃣", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🧑🏿‍🚀",
		"🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F", // Scotland
	} {
		if err := checkEmoji(ok); err != nil {
			t.Errorf("%q (% x) refused: %v", ok, ok, err)
		}
	}
	for bad, says := range map[string]string{
		"":                     "must not be empty",
		"ok":                   "single emoji",
		"👍👍":                   "single emoji",
		"👍 ":                   "single emoji",
		"🏽":                    "single emoji", // a skin tone alone
		"\u200d":               "single emoji",
		"👍\u200d":              "single emoji", // a dangling joiner
		"🇧":                    "single emoji", // half a flag
		"🇧🇷🇵🇹":                 "single emoji",
		strings.Repeat("👍", 9): "the limit is 32",
		"\xff":                 "not valid UTF-8",
	} {
		err := checkEmoji(bad)
		if err == nil || !strings.Contains(err.Error(), says) || AsError(err).Code != CodeInvalid {
			t.Errorf("%q: %v, want invalid_argument saying %q", bad, err, says)
		}
	}
}
