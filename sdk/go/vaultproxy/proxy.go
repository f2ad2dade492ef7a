package vaultproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ProxyURL returns the vault URL that Proxy calls for service and path: <vault>/proxy/<service>/<path>.
// path (which may carry a query) is used as the caller encoded it: %2F, %3F and %23 stay encoded.
// For a unix-socket vault the host part is a placeholder.
func (c *Client) ProxyURL(service, path string) string {
	return c.addr.baseURL + "/proxy/" + segment(service) + "/" + strings.TrimLeft(path, "/")
}

// Proxy sends a request through the vault to service, which injects the service's credential,
// and returns the upstream's response unchanged: status, headers and a body streamed as it
// arrives (SSE and LLM streams work chunk by chunk). The caller must close resp.Body.
//
// An upstream answer is never an error, whatever its status (404, 500, …). A *VaultError is
// returned only for answers the vault generated itself (bad token, unknown service, vault
// locked, SSRF refusal, upstream unreachable or timed out…), which the server marks with the
// response header X-Vault-Error: 1, and for failures to reach the vault.
//
// method defaults to GET; path (with an optional ?query) is sent as encoded; body may be nil;
// header is sent along (the vault strips hop-by-hop headers and injects the credential; the
// client's own Authorization header carries the vault token and is never forwarded upstream).
// The client's timeout bounds the wait for the response headers and then the wait for each body
// chunk, not the whole stream; cancel ctx to stop a stream early.
func (c *Client) Proxy(ctx context.Context, service, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	if service == "" {
		return nil, emptyName("service")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if method == "" {
		method = http.MethodGet
	}
	ctx, cancel := context.WithCancel(ctx)
	idle := newIdleTimer(c.timeout, cancel)
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(method), c.ProxyURL(service, path), body)
	if err != nil {
		idle.stop()
		cancel()
		return nil, fmt.Errorf("vaultproxy: building proxy request: %w", err)
	}
	for name, values := range header {
		req.Header[name] = append([]string(nil), values...)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	c.setAuth(req.Header)
	idle.start()
	resp, err := c.http.Do(req)
	idle.stop()
	if err != nil {
		cancel()
		if idle.fired() {
			return nil, &VaultError{
				Message: fmt.Sprintf("proxied request to %s: no response headers within %s", service, c.timeout),
				Err:     context.DeadlineExceeded,
			}
		}
		return nil, c.transportError(ctx, err)
	}
	if isVaultError(resp) {
		verr := errorFromResponse(resp)
		cancel()
		return nil, verr
	}
	resp.Body = &proxyBody{body: resp.Body, cancel: cancel, idle: idle}
	return resp, nil
}

// idleTimer cancels a request when one wait (for headers, or for the next body chunk) lasts
// longer than limit. A zero limit disables it.
type idleTimer struct {
	limit  time.Duration
	cancel context.CancelFunc
	mu     sync.Mutex
	timer  *time.Timer
	done   atomic.Bool
}

func newIdleTimer(limit time.Duration, cancel context.CancelFunc) *idleTimer {
	return &idleTimer{limit: limit, cancel: cancel}
}

// start arms the timer for one wait.
func (t *idleTimer) start() {
	if t.limit <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer == nil {
		t.timer = time.AfterFunc(t.limit, func() {
			t.done.Store(true)
			t.cancel()
		})
		return
	}
	t.timer.Reset(t.limit)
}

// stop disarms the timer after a wait.
func (t *idleTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer != nil {
		t.timer.Stop()
	}
}

// fired reports whether the timer cancelled the request.
func (t *idleTimer) fired() bool { return t.done.Load() }

// proxyBody is a proxied response body: each Read is bounded by the idle timer, and Close
// releases the request's context.
type proxyBody struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	idle   *idleTimer
	once   sync.Once
}

// Read reads the next bytes of the upstream's body as they arrive.
func (b *proxyBody) Read(p []byte) (int, error) {
	b.idle.start()
	n, err := b.body.Read(p)
	b.idle.stop()
	if err != nil && err != io.EOF && b.idle.fired() {
		return n, fmt.Errorf("vaultproxy: no data from the upstream for %s: %w", b.idle.limit, context.DeadlineExceeded)
	}
	return n, err
}

// Close closes the body and releases the request.
func (b *proxyBody) Close() error {
	err := b.body.Close()
	b.once.Do(func() {
		b.idle.stop()
		b.cancel()
	})
	return err
}
