package vaultproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Version is the SDK's version, sent in the User-Agent header.
const Version = "0.1.0"

// DefaultTimeout bounds each call to the vault's own API (and, for Proxy, the wait for the
// response headers and for each body chunk). WithTimeout changes it.
const DefaultTimeout = 60 * time.Second

// connectTimeout bounds connecting to the vault server.
const connectTimeout = 10 * time.Second

// Client is a client of vault-server's HTTP API. It is safe for concurrent use.
//
// Every method of the vault's own API returns a *VaultError for a non-2xx answer and for a
// server that cannot be reached. Proxy returns the upstream's answer as is, whatever its status.
type Client struct {
	addr      address
	http      *http.Client
	timeout   time.Duration
	userAgent string

	mu    sync.RWMutex
	token string
}

// config collects the options of a constructor.
type config struct {
	timeout       time.Duration
	httpClient    *http.Client
	tlsConfig     *tls.Config
	allowInsecure bool
	userAgent     string
}

// Option configures a Client at construction.
type Option func(*config)

// WithTimeout sets the timeout of each call (default DefaultTimeout; 0 means none). For vault
// API calls it bounds the whole call; for Proxy it bounds the wait for the response headers and
// then the wait for each body chunk, so a long stream lives as long as data keeps coming.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithHTTPClient makes the Client send its requests with hc. Redirects must not be followed
// (the SDK returns 3xx answers to the caller) and hc.Timeout should be 0 so that proxied streams
// are not cut: the SDK sets its own deadlines. For a unix-socket address, hc's transport (when it
// is nil or an *http.Transport) is copied and made to dial the socket.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) { c.httpClient = hc }
}

// WithTLSConfig sets the TLS configuration used to reach an https:// vault (e.g. a RootCAs pool
// holding a private CA). It is ignored when WithHTTPClient is given.
func WithTLSConfig(tc *tls.Config) Option {
	return func(c *config) { c.tlsConfig = tc }
}

// WithAllowInsecure allows plain http:// to a non-loopback host (a token sent in clear over a
// network is a leaked token: use it only on a trusted private link).
func WithAllowInsecure() Option {
	return func(c *config) { c.allowInsecure = true }
}

// WithUserAgent replaces the User-Agent sent to the vault (not on proxied calls that set their own).
func WithUserAgent(ua string) Option {
	return func(c *config) { c.userAgent = ua }
}

// New returns a client configured from the environment: the address from $VAULT_ADDR (default
// DefaultAddr; unix:/path.sock works too) and the token from $VAULT_TOKEN, else from the session
// file written by `vault-cli unlock` (see SessionPath). A client without a token can still call
// Health and Unlock.
func New(opts ...Option) (*Client, error) {
	return newClient("", "", opts)
}

// NewWithToken returns a client of the vault at addr using token. An empty addr means $VAULT_ADDR
// (else DefaultAddr); an empty token means $VAULT_TOKEN, else the session file. addr may be an
// http(s) URL, a bare host:port (plain http) or unix:/path.sock.
func NewWithToken(addr, token string, opts ...Option) (*Client, error) {
	return newClient(addr, token, opts)
}

// NewWithSocket returns a client of the vault listening on the unix socket at path
// (vault-server --listen unix:/path.sock). An empty token is resolved as in NewWithToken.
func NewWithSocket(path, token string, opts ...Option) (*Client, error) {
	if path == "" {
		return nil, addrError(ErrInvalidAddress, "invalid vault address: empty unix socket path")
	}
	return newClient("unix:"+path, token, opts)
}

func newClient(rawAddr, token string, opts []Option) (*Client, error) {
	cfg := config{timeout: DefaultTimeout, userAgent: "vault-proxy-go/" + Version}
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	addr, err := parseAddr(rawAddr, cfg.allowInsecure)
	if err != nil {
		return nil, err
	}
	hc := cfg.httpClient
	if hc == nil {
		hc = &http.Client{
			Transport: newTransport(cfg.tlsConfig),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if addr.socket != "" {
		hc = socketClient(hc, addr.socket)
	}
	return &Client{
		addr:      addr,
		http:      hc,
		timeout:   cfg.timeout,
		userAgent: cfg.userAgent,
		token:     resolveToken(token),
	}, nil
}

// newTransport is the SDK's own transport: no environment proxy (vault traffic never goes through
// HTTP(S)_PROXY), no transparent decompression (proxied bodies reach the caller unchanged).
func newTransport(tc *tls.Config) *http.Transport {
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: connectTimeout,
		DisableCompression:  true,
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
}

// socketClient returns a copy of hc whose transport dials the unix socket at path.
func socketClient(hc *http.Client, path string) *http.Client {
	var base *http.Transport
	switch t := hc.Transport.(type) {
	case nil:
		base = newTransport(nil)
	case *http.Transport:
		base = t.Clone()
	default:
		return hc // a custom RoundTripper: the caller takes care of the socket
	}
	dialer := &net.Dialer{Timeout: connectTimeout}
	base.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, "unix", path)
	}
	base.Proxy = nil
	copied := *hc
	copied.Transport = base
	return &copied
}

// Addr returns the vault address in use (for messages), e.g. http://127.0.0.1:8390 or unix:/run/vault.sock.
func (c *Client) Addr() string { return c.addr.display }

// Token returns the token sent with each request ("" when none). Unlock sets it; Lock clears it.
func (c *Client) Token() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.token
}

// SetToken replaces the token sent with each request.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	c.token = strings.TrimSpace(token)
	c.mu.Unlock()
}

// String describes the client without its token.
func (c *Client) String() string { return fmt.Sprintf("vaultproxy.Client(%s)", c.addr.display) }

// CloseIdleConnections closes idle keep-alive connections to the vault.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// request describes one call to the vault's own API.
type request struct {
	method      string
	path        string // already escaped
	query       url.Values
	body        io.Reader
	contentType string
	noAuth      bool          // do not send the caller's token
	extraTime   time.Duration // added to the client's timeout (long server-side operations)
}

// segment escapes one path segment (names may hold spaces, '?', '#', '%', '/').
func segment(value string) string { return url.PathEscape(value) }

// jsonBody encodes v as a request body.
func jsonBody(v any) (io.Reader, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("vaultproxy: encoding request body: %w", err)
	}
	return bytes.NewReader(data), nil
}

// setAuth adds the caller's token to h (the token header always wins).
func (c *Client) setAuth(h http.Header) {
	if token := c.Token(); token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
}

// send performs r and returns the response when it is 2xx; any other answer becomes a
// *VaultError. The returned cancel func must be called once the body has been consumed.
func (c *Client) send(ctx context.Context, r request) (*http.Response, context.CancelFunc, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var cancel context.CancelFunc
	if c.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.timeout+r.extraTime)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	target := c.addr.baseURL + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, r.body)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("vaultproxy: building request: %w", err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if !r.noAuth {
		c.setAuth(req.Header)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, nil, c.transportError(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		verr := errorFromResponse(resp)
		cancel()
		return nil, nil, verr
	}
	return resp, cancel, nil
}

// doJSON performs r and decodes a JSON answer into out (when out is not nil).
func (c *Client) doJSON(ctx context.Context, r request, out any) error {
	resp, cancel, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return c.transportError(ctx, err)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &VaultError{
			StatusCode: resp.StatusCode,
			Message:    fmt.Sprintf("unexpected answer from vault-server at %s: %v", c.addr.display, err),
			Err:        err,
		}
	}
	return nil
}

// doRaw performs r and returns the answer's bytes.
func (c *Client) doRaw(ctx context.Context, r request) ([]byte, error) {
	resp, cancel, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	return data, nil
}

// transportError maps a failure without an HTTP answer to a *VaultError with StatusCode 0.
func (c *Client) transportError(ctx context.Context, err error) error {
	var verr *VaultError
	if errors.As(err, &verr) {
		return err
	}
	var opErr *net.OpError
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return &VaultError{Message: fmt.Sprintf("request to vault-server at %s canceled", c.addr.display), Err: err}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &VaultError{Message: fmt.Sprintf("request to vault-server at %s timed out", c.addr.display), Err: err}
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return &VaultError{
			Message: fmt.Sprintf("cannot reach vault-server at %s: %v", c.addr.display, opErr.Err),
			Err:     err,
		}
	default:
		return &VaultError{Message: fmt.Sprintf("request to vault-server at %s failed: %v", c.addr.display, err), Err: err}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
