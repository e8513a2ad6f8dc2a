package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/demo"
)

// The demo client's tests: the real binary, and the page driven in a real
// headless Chromium over the Chrome DevTools Protocol.

// browserEnv names the variable that turns a missing browser from a skip
// into a failure (.ci/run sets it, so CI cannot skip silently).
const browserEnv = "CHAT_REQUIRE_BROWSER"

// findChromium returns the browser to drive, or skips (fails under
// CHAT_REQUIRE_BROWSER=1) saying how to install one.
func findChromium(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"}
	if p := os.Getenv("CHAT_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no Chromium found (looked for %s on PATH, or CHAT_CHROMIUM): install it with `apt-get install -y chromium` (Debian/Ubuntu) to run the demo client's browser test",
		strings.Join(names, ", "))
	if os.Getenv(browserEnv) == "1" {
		t.Fatalf("%s; %s=1 requires it", msg, browserEnv)
	}
	t.Skip(msg)
	return ""
}

// devEnv is a deployment run by `chat dev` with the published development
// secret, as `make dev` runs it.
func devEnv(t *testing.T) (*env, *proc) {
	t.Helper()
	e := newEnv(t)
	e.extra = append(e.extra, "JWT_SECRET=") // the last value wins: unset
	e.secret = devJWTSecret
	p := e.start("dev")
	e.waitHTTP(p)
	return e, p
}

// get does a plain request and returns the status and body.
func get(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestDemoOffOutsideDev: chat api serves neither the page nor the token
// endpoint, and chat dev with a real secret serves the page but mints no
// tokens.
func TestDemoOffOutsideDev(t *testing.T) {
	e := newEnv(t)
	p := e.start("api")
	e.waitHTTP(p)
	base := "http://" + e.http
	for _, c := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/demo/app.js"}, {"GET", "/?user=1"}, {"POST", demo.TokenPath},
	} {
		if code, _, body := get(t, c.method, base+c.path, `{"user_id":1}`); code != http.StatusNotFound {
			t.Errorf("chat api: %s %s = %d %s, want 404", c.method, c.path, code, body)
		}
	}
	_ = p.stop(t)

	d := newEnv(t)
	pd := d.start("dev") // JWT_SECRET=testSecret: not the development secret
	d.waitHTTP(pd)
	base = "http://" + d.http
	if code, _, body := get(t, "GET", base+"/", ""); code != http.StatusOK || !strings.Contains(body, "app.js") {
		t.Errorf("chat dev: GET / = %d, want the page", code)
	}
	code, _, body := get(t, "POST", base+demo.TokenPath, `{"user_id":1}`)
	if code != http.StatusNotFound || !strings.Contains(body, "chat token") {
		t.Errorf("chat dev with JWT_SECRET: POST %s = %d %s, want 404 naming chat token", demo.TokenPath, code, body)
	}
}

// TestDemoClient runs chat dev, checks the page and its token endpoint,
// then opens two pages as users 1 and 2 in one headless Chromium: they
// exchange messages, see typing, delivered and read ticks, an image with
// its thumbnail, and catch up after a reconnect. Screenshots are saved to
// CHAT_SCREENSHOT_DIR (or the test's artifact directory).
func TestDemoClient(t *testing.T) {
	e, _ := devEnv(t)
	base := "http://" + e.http

	code, hdr, body := get(t, "GET", base+"/", "")
	if code != http.StatusOK || !strings.Contains(body, `src="/demo/app.js"`) {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("GET / Content-Security-Policy = %q", csp)
	}
	for _, f := range []string{"/demo/app.js", "/demo/style.css"} {
		if code, _, _ := get(t, "GET", base+f, ""); code != http.StatusOK {
			t.Errorf("GET %s = %d", f, code)
		}
	}
	code, _, body = get(t, "POST", base+demo.TokenPath, `{"user_id":7}`)
	var tok struct {
		Token  string `json:"token"`
		UserID int64  `json:"user_id"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &tok) != nil || tok.UserID != 7 {
		t.Fatalf("POST %s = %d %s", demo.TokenPath, code, body)
	}
	v, err := auth.NewVerifier([]byte(devJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	if u, err := v.UserID(t.Context(), tok.Token); err != nil || u != 7 {
		t.Fatalf("minted token: user %d, %v", u, err)
	}
	if code, _, body := get(t, "POST", base+demo.TokenPath, `{"user_id":-1}`); code != http.StatusBadRequest || !strings.Contains(body, "positive") {
		t.Errorf("POST %s with user_id -1 = %d %s, want 400", demo.TokenPath, code, body)
	}

	chromium := findChromium(t)
	shots := os.Getenv("CHAT_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.ArtifactDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1100, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelBrowser)
	// The first Do on a context binds the browser (or tab) to it: no
	// timeout there, only on the steps after.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	p1, cancel1 := chromedp.NewContext(browser)
	t.Cleanup(cancel1)
	p2, cancel2 := chromedp.NewContext(browser)
	t.Cleanup(cancel2)
	var consoleMu sync.Mutex
	var console []string
	for i, p := range []context.Context{p1, p2} {
		if err := chromedp.Do(p); err != nil {
			t.Fatalf("open a tab: %v", err)
		}
		// The pages' console, shown when the test fails.
		msgs := chromedp.Console(p)
		go func() {
			for m, err := range msgs {
				if err != nil {
					return
				}
				consoleMu.Lock()
				console = append(console, fmt.Sprintf("user %d: %s", i+1, m))
				consoleMu.Unlock()
			}
		}()
	}
	t.Cleanup(func() {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		if t.Failed() {
			t.Logf("browser console:\n%s", strings.Join(console, "\n"))
		}
	})

	// Generous limits: a loaded 2-core machine runs the browser, the
	// server and its workers at once.
	const step = 60 * time.Second
	run := func(page context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(page, step)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			shot(t, page, shots, "failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(page context.Context, what, expr string) any {
		t.Helper()
		ctx, cancel := context.WithTimeout(page, step)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	// until waits for a JavaScript condition on a page.
	until := func(page context.Context, what, expr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(page, step+5*time.Second)
		defer cancel()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(step), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			shot(t, page, shots, "failed")
			t.Logf("page state: %v", eval(page, "read the page's state", `JSON.stringify({open: state.open, user: state.user, convs: [...state.convs.keys()], status: document.querySelector("#status").textContent})`))
			t.Fatalf("waiting until %s: %v", what, err)
		}
	}
	msgWith := func(text string) string {
		q, _ := json.Marshal(text)
		return fmt.Sprintf(`[...document.querySelectorAll("#messages .msg")].find(m => { const s = m.querySelector(".text"); return s && s.textContent === %s; })`, q)
	}
	statusOf := func(text, status string) string {
		return fmt.Sprintf(`(m => m && m.dataset.status === %q)(%s)`, status, msgWith(text))
	}

	run(p1, "open the page as user 1", chromedp.Navigate(base+"/?user=1"))
	until(p1, "user 1 is online", `document.querySelector("#conn.on") !== null`)
	run(p2, "open the page as user 2", chromedp.Navigate(base+"/?user=2"))
	until(p2, "user 2 is online", `document.querySelector("#conn.on") !== null`)
	t.Logf("page visibility: %v", eval(p2, "read visibility", `document.visibilityState`))

	// User 1 starts the conversation and writes; user 2's page is open but
	// not on the conversation: the message is delivered, not read.
	run(p1, "start a conversation with user 2",
		chromedp.SetValue(chromedp.CSS("#peer-id"), "2"),
		chromedp.Click(chromedp.CSS("#new-conv button")),
		chromedp.WaitVisible(chromedp.CSS("#compose")))
	const hello = "Hello from user 1"
	run(p1, "send a text", chromedp.SendKeys(chromedp.CSS("#text"), hello), chromedp.Click(chromedp.CSS("#compose button")))
	until(p1, "the text is delivered", statusOf(hello, "delivered"))
	until(p2, "user 2's list shows the conversation", `document.querySelector("#conversations li") !== null`)

	// User 2 opens it: the text shows, and user 1 sees it read.
	run(p2, "open the conversation", chromedp.Click(chromedp.CSS("#conversations li")))
	until(p2, "user 2 sees the text", msgWith(hello)+` !== undefined`)
	until(p1, "user 1 sees it read", statusOf(hello, "read"))

	// Typing: user 2 types, user 1 sees it; sending clears it.
	const reply = `<b>bold?</b> <img src=x onerror="document.title='xss'"> a reply from user 2`
	run(p2, "type a reply", chromedp.SendKeys(chromedp.CSS("#text"), reply))
	until(p1, "user 1 sees user 2 typing", `document.querySelector("#typing").textContent.includes("user 2 is typing")`)
	run(p2, "send the reply", chromedp.Click(chromedp.CSS("#compose button")))
	until(p1, "user 1 sees the reply", msgWith(reply)+` !== undefined`)
	until(p1, "the typing indicator goes", `document.querySelector("#typing").textContent === ""`)
	// Markup in a message is text: no element came of it.
	if eval(p1, "look for injected markup", `document.querySelector("#messages b, #messages img:not(.thumb)") !== null || document.title === "xss"`) != false {
		t.Error("a message's markup became elements on the page")
	}
	until(p2, "user 2 sees the reply read", statusOf(reply, "read"))

	// An image: uploaded, sent, and its thumbnail loaded on both pages.
	img := filepath.Join(t.TempDir(), "photo.jpg")
	writeJPEG(t, img, 800, 600)
	run(p1, "send an image", chromedp.SetUploadFiles(chromedp.CSS("#image"), []string{img}))
	thumbLoaded := `(i => i !== null && i.complete && i.naturalWidth > 0)(document.querySelector("#messages img.thumb"))`
	until(p1, "user 1's thumbnail loads", thumbLoaded)
	until(p2, "user 2's thumbnail loads", thumbLoaded)
	w, _ := eval(p2, "measure the thumbnail", `document.querySelector("#messages img.thumb").naturalWidth`).(float64)
	if w <= 0 || w > 320 {
		t.Errorf("thumbnail is %v pixels wide, want a thumbnail of at most CHAT_THUMBNAIL_SIZE (320)", w)
	}

	// Reconnect: user 2 goes offline, user 1 writes, user 2 comes back and
	// catches up from the last sequence it saw.
	run(p2, "go offline", chromedp.Click(chromedp.CSS("#toggle")))
	until(p2, "user 2 is offline", `document.querySelector("#conn.off") !== null`)
	const away = "Sent while you were away"
	run(p1, "send while user 2 is away", chromedp.SendKeys(chromedp.CSS("#text"), away), chromedp.Click(chromedp.CSS("#compose button")))
	until(p1, "the message is accepted", statusOf(away, "sent"))
	// What user 2 writes offline waits, and goes out on reconnecting.
	const queued = "Written while offline"
	run(p2, "write while offline", chromedp.SendKeys(chromedp.CSS("#text"), queued), chromedp.Click(chromedp.CSS("#compose button")))
	until(p2, "the offline message waits", statusOf(queued, "pending"))
	run(p2, "go online", chromedp.Click(chromedp.CSS("#toggle")))
	until(p2, "user 2 is online again", `document.querySelector("#conn.on") !== null`)
	until(p2, "user 2 caught up", msgWith(away)+` !== undefined`)
	until(p1, "user 1 sees it read", statusOf(away, "read"))
	until(p1, "user 1 gets the offline message", msgWith(queued)+` !== undefined`)
	until(p2, "user 2's offline message is read", statusOf(queued, "read"))
	var n int
	for _, m := range e.messages(1, conversationOf(t, e), 5) {
		if m.TextContent != nil && *m.TextContent == queued {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the offline message is stored %d times, want once", n)
	}

	shot(t, p1, shots, "user1")
	shot(t, p2, shots, "user2")
	t.Logf("screenshots in %s", shots)
}

// conversationOf is user 1's one conversation.
func conversationOf(t *testing.T, e *env) string {
	t.Helper()
	var page struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if code := e.call(1, "GET", "/conversations", nil, &page); code != http.StatusOK || len(page.Data) != 1 {
		t.Fatalf("user 1's conversations: %d %v", code, page.Data)
	}
	return page.Data[0].ID
}

// shot saves a screenshot of page as dir/name.png.
func shot(t *testing.T, page context.Context, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(page, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, "democlient-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
}

// writeJPEG writes a real w×h JPEG: a gradient with a disc, so the
// thumbnail shows something.
func writeJPEG(t *testing.T, path string, w, h int) {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 160, 255}
			if dx, dy := x-w/2, y-h/2; dx*dx+dy*dy < (h/4)*(h/4) {
				c = color.RGBA{250, 210, 40, 255}
			}
			m.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
