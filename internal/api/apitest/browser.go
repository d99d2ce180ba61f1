// Package apitest checks the management API's status page the way its
// owner sees it: in a real headless Chromium, through the login form. It
// serves the api package's own tests and the end-to-end tests against a
// booted node alike.
package apitest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// ErrNoChromium is returned (wrapped) when no Chromium is installed; the
// message says how to install it.
var ErrNoChromium = errors.New("chromium is not installed: apt-get install chromium (make deps does)")

// FindChromium returns the path of the Chromium binary.
func FindChromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	return "", ErrNoChromium
}

// PageState is what the status page showed.
type PageState struct {
	AppState string // the .state cell of the app's row
	AppAPI   string // the .app-api cell: readiness, watchdog, locks
	LogApp   string // whose log the page follows
	Logs     string // the #logs text
	Node     string // the #node table's text
}

// CheckPage opens url (the node's status page) in headless Chromium, logs
// in with token through the page's form, and waits until wantApp's row
// says "running" and its followed log shows wantLogLine. It returns an
// error saying what the page showed instead, with the browser's console
// errors, when ctx ends first. The browser accepts any certificate: this
// checks the page, and the CLI's pinning is tested on its own.
func CheckPage(ctx context.Context, url, token, wantApp, wantLogLine string) error {
	_, err := checkPage(ctx, url, token, wantApp, wantLogLine, nil)
	return err
}

// CheckPageState is CheckPage returning what the page showed of wantApp;
// it also waits until the node's table shows each of wantNode (e.g. the
// remote log shipper's rows).
func CheckPageState(ctx context.Context, url, token, wantApp, wantLogLine string, wantNode ...string) (PageState, error) {
	return checkPage(ctx, url, token, wantApp, wantLogLine, wantNode)
}

func checkPage(ctx context.Context, url, token, wantApp, wantLogLine string, wantNode []string) (PageState, error) {
	var st PageState
	bin, err := FindChromium()
	if err != nil {
		return st, err
	}
	profile, err := os.MkdirTemp("", "nodeboot-chromium-")
	if err != nil {
		return st, fmt.Errorf("a profile dir for chromium: %w", err)
	}
	defer os.RemoveAll(profile)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
	}

	// Flags for running as root in a sandbox without a GPU or an outside
	// network: no sandbox, no QUIC, nothing phoning home.
	actx, cancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
	)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	var mu sync.Mutex
	var console []string
	// The console iterator subscribes (and starts the browser) at once;
	// the page's errors, CSP refusals included, then explain a failure.
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			if len(console) < 20 {
				console = append(console, m.String())
			}
			mu.Unlock()
		}
	}()
	fail := func(err error) (PageState, error) {
		mu.Lock()
		defer mu.Unlock()
		msg := fmt.Sprintf("status page %s: %v; the page showed app state %q, the node %q, the log of %q:\n%s", url, err, st.AppState, st.Node, st.LogApp, tail(st.Logs, 20))
		if len(console) > 0 {
			msg += "\nbrowser console:\n  " + strings.Join(console, "\n  ")
		}
		return st, errors.New(msg)
	}

	if err := chromedp.Do(bctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitReady(chromedp.ID("apps")),
	); err != nil {
		return fail(fmt.Errorf("logging in: %w", err))
	}

	// The page re-renders its table every 2 s, so poll what it shows and
	// pick the app's log with a click when another app's is shown.
	query := fmt.Sprintf(`(() => {
		const row = document.querySelector('#apps tr[data-app=%[1]q]');
		const state = row ? row.querySelector('.state').textContent : "";
		const api = row ? row.querySelector('.app-api').textContent : "";
		const logApp = document.getElementById('logs-app').textContent;
		if (row && logApp !== %[1]q) row.querySelector('button.show-logs').click();
		return {appState: state, appAPI: api, logApp: logApp, logs: document.getElementById('logs').textContent, node: document.getElementById('node').textContent};
	})()`, wantApp)
	for {
		got, err := chromedp.Run(bctx, chromedp.Evaluate[shown](query))
		if err != nil {
			return fail(fmt.Errorf("reading the page: %w", err))
		}
		mu.Lock()
		st = PageState{AppState: got.AppState, AppAPI: got.AppAPI, LogApp: got.LogApp, Logs: got.Logs, Node: got.Node}
		mu.Unlock()
		nodeOK := true
		for _, w := range wantNode {
			nodeOK = nodeOK && strings.Contains(st.Node, w)
		}
		if st.AppState == "running" && st.LogApp == wantApp && strings.Contains(st.Logs, wantLogLine) && nodeOK {
			break
		}
		select {
		case <-bctx.Done():
			return fail(fmt.Errorf("app %q running with log line %q (and node rows %q) not seen: %w", wantApp, wantLogLine, wantNode, context.Cause(bctx)))
		case <-time.After(200 * time.Millisecond):
		}
	}

	// The browser holds a session secret, never the token, and not for
	// ever (issue 12, item 9); the page's button ends it.
	res, err := chromedp.Run(bctx, func(ctx context.Context, t *chromedp.Target) (*network.GetCookiesResult, error) {
		r, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
		return &r, err
	})
	if err != nil {
		return fail(fmt.Errorf("reading the browser's cookies: %w", err))
	}
	cookies := res.Cookies
	for _, c := range cookies {
		if strings.Contains(c.Value, token) || c.Session || !c.HTTPOnly || !c.Secure {
			// The value is not printed: it may be the owner's token.
			return fail(fmt.Errorf("the browser keeps the cookie %s (holds the token %v, session-only %v, HttpOnly %v, Secure %v): want a secret other than the token, expiring, HttpOnly and Secure", c.Name, strings.Contains(c.Value, token), c.Session, c.HTTPOnly, c.Secure))
		}
	}
	if len(cookies) != 1 {
		return fail(fmt.Errorf("the browser keeps %d cookies, want the one session cookie", len(cookies)))
	}
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`#logout button`)),
		chromedp.WaitVisible(chromedp.ID("token")),
	); err != nil {
		return fail(fmt.Errorf("logging out: %w", err))
	}
	return st, nil
}

// shown is what the page's query returns.
type shown struct {
	AppState string `json:"appState"`
	AppAPI   string `json:"appAPI"`
	LogApp   string `json:"logApp"`
	Logs     string `json:"logs"`
	Node     string `json:"node"`
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
