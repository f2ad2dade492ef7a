package vaultproxy

import "time"

// Health is the answer of GET /health.
type Health struct {
	// Status is "locked" or "unlocked".
	Status string `json:"status"`
}

// Unlocked reports whether the vault is unlocked.
func (h Health) Unlocked() bool { return h.Status == "unlocked" }

// Token scopes.
const (
	// ScopeAdmin may call every route.
	ScopeAdmin = "admin"
	// ScopeProxy may list/read services and use them (proxy, SSH, sessions), nothing else.
	ScopeProxy = "proxy"
)

// Token describes a vault token. ID (the full 64-hex token) is set only in the answer that
// created it (Unlock, CreateToken); ListTokens shows IDPrefix instead.
type Token struct {
	// ID is the full token; only returned at creation.
	ID string `json:"id,omitempty"`
	// IDPrefix is the first 12 hex characters of the token, as listed by ListTokens.
	IDPrefix string `json:"id_prefix,omitempty"`
	// Scope is ScopeAdmin or ScopeProxy.
	Scope string `json:"scope"`
	// CreatedAt is when the token was minted.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the token stops working.
	ExpiresAt time.Time `json:"expires_at"`
	// Name is the label given at creation, if any.
	Name string `json:"name,omitempty"`
	// Services lists the services a restricted proxy token may use (empty: all).
	Services []string `json:"services,omitempty"`
}

// TokenRequest describes a token to mint with CreateToken.
type TokenRequest struct {
	// Scope is ScopeAdmin or ScopeProxy ("" means ScopeProxy, as in the Python SDK).
	Scope string
	// Services restricts a proxy token to these services; others answer 404 as if absent.
	Services []string
	// TTL is the token's lifetime (0: the server's --token-ttl). Sent in whole seconds, rounded up.
	TTL time.Duration
	// Name labels the token in ListTokens and the audit log.
	Name string
}

// Auth is the "auth" object of a service: {"type": …, plus that type's fields} (SPEC §8). Use
// the helpers (BearerAuth, HeaderAuth, BasicAuth, URLAuth) or build the map directly, e.g.
//
//	vaultproxy.Auth{"type": "redis", "redis_host": "10.0.0.5", "redis_password": pw, "redis_db": 2}
type Auth map[string]any

// BearerAuth injects "Authorization: Bearer <token>".
func BearerAuth(token string) Auth { return Auth{"type": "bearer", "token": token} }

// HeaderAuth injects "<name>: <value>".
func HeaderAuth(name, value string) Auth {
	return Auth{"type": "header", "header_name": name, "header_value": value}
}

// BasicAuth injects HTTP basic authentication.
func BasicAuth(username, password string) Auth {
	return Auth{"type": "basic", "username": username, "password": password}
}

// URLAuth puts token in place of "{token}" in the service's base_url.
func URLAuth(token string) Auth { return Auth{"type": "url", "token": token} }

// Service is the body of AddService and UpdateService. It holds secrets (inside Auth) and is
// never returned by the vault: answers are ServiceInfo.
type Service struct {
	// Name is 1–128 characters of [a-zA-Z0-9._-], starting with a letter or digit.
	Name string `json:"name"`
	// BaseURL is required for HTTP auth types (bearer, header, basic, url, oauth2_client, service_account).
	BaseURL string `json:"base_url,omitempty"`
	// Auth holds the auth type and its fields.
	Auth Auth `json:"auth"`
	// TLSSkipVerify skips upstream certificate checks and allows http and private addresses (homelab escape hatch).
	TLSSkipVerify bool `json:"tls_skip_verify,omitempty"`
	// SessionCookies keeps upstream cookies in a server-side jar for this service.
	SessionCookies bool `json:"session_cookies,omitempty"`
	// RedactResponses, when set to false, turns off echo scrubbing of the service's secrets.
	RedactResponses *bool `json:"redact_responses,omitempty"`
	// MaxRequestMB raises the cap on proxied request bodies for this service (0: server default).
	MaxRequestMB int `json:"max_request_mb,omitempty"`
}

// ServiceInfo is what the vault tells about a service; it never holds a secret. Fields that do
// not apply to the service's auth type are zero.
type ServiceInfo struct {
	Name           string `json:"name"`                      // service name
	BaseURL        string `json:"base_url,omitempty"`        // upstream base URL
	AuthType       string `json:"auth_type"`                 // bearer, header, basic, url, oauth2_client, …
	TLSSkipVerify  bool   `json:"tls_skip_verify,omitempty"` // homelab escape hatch on
	SessionCookies bool   `json:"session_cookies,omitempty"` // server-side cookie jar on
	// RedactResponses is false when echo scrubbing is off (nil: on, the default).
	RedactResponses *bool `json:"redact_responses,omitempty"`
	MaxRequestMB    int   `json:"max_request_mb,omitempty"` // per-service request body cap

	HeaderName string `json:"header_name,omitempty"` // header auth
	Username   string `json:"username,omitempty"`    // basic auth

	ClientID         string   `json:"client_id,omitempty"`          // oauth2_client
	TokenURL         string   `json:"token_url,omitempty"`          // oauth2_client
	ClientSecretFile string   `json:"client_secret_file,omitempty"` // oauth2_client (stored file)
	TokenFile        string   `json:"token_file,omitempty"`         // oauth2_client (stored file)
	Scopes           []string `json:"scopes,omitempty"`             // oauth2_client
	FileRef          string   `json:"file_ref,omitempty"`           // service_account key file
	SAScopes         []string `json:"sa_scopes,omitempty"`          // service_account
	SATokenURL       string   `json:"sa_token_url,omitempty"`       // service_account
	SASubject        string   `json:"sa_subject,omitempty"`         // service_account
	// ExpiresAt is the cached OAuth access token's expiry (RFC 3339), "" when none.
	ExpiresAt string `json:"expires_at,omitempty"`
	// TokenStatus is valid, expiring (< 30 min) or expired, for OAuth types.
	TokenStatus string `json:"token_status,omitempty"`

	SSHHost               string   `json:"ssh_host,omitempty"`                 // ssh_key
	SSHPort               int      `json:"ssh_port,omitempty"`                 // ssh_key
	SSHUser               string   `json:"ssh_user,omitempty"`                 // ssh_key
	SSHKeyFileRef         string   `json:"ssh_key_file_ref,omitempty"`         // ssh_key (stored file)
	SSHAllowedCommands    []string `json:"ssh_allowed_commands,omitempty"`     // ssh_key allowlist
	SSHAllowedPaths       []string `json:"ssh_allowed_paths,omitempty"`        // ssh_key upload/download roots
	SSHHostKeyFingerprint string   `json:"ssh_host_key_fingerprint,omitempty"` // pinned host key, SHA256:…
	SSHConnected          bool     `json:"ssh_connected,omitempty"`            // a pooled connection is open

	IMAPHost string `json:"imap_host,omitempty"` // imap
	IMAPPort int    `json:"imap_port,omitempty"` // imap
	IMAPUser string `json:"imap_user,omitempty"` // imap
	IMAPTLS  string `json:"imap_tls,omitempty"`  // implicit, starttls or none

	SMTPHost string `json:"smtp_host,omitempty"` // smtp
	SMTPPort int    `json:"smtp_port,omitempty"` // smtp
	SMTPUser string `json:"smtp_user,omitempty"` // smtp
	SMTPTLS  string `json:"smtp_tls,omitempty"`  // implicit, starttls or none

	RedisHost     string `json:"redis_host,omitempty"`     // redis
	RedisPort     int    `json:"redis_port,omitempty"`     // redis
	RedisUsername string `json:"redis_username,omitempty"` // redis ACL user
	RedisDB       int    `json:"redis_db,omitempty"`       // redis database number
	RedisTLS      bool   `json:"redis_tls,omitempty"`      // redis over TLS

	PostgresHost string `json:"postgres_host,omitempty"` // postgres
	PostgresPort int    `json:"postgres_port,omitempty"` // postgres
	PostgresUser string `json:"postgres_user,omitempty"` // postgres
	PostgresDB   string `json:"postgres_db,omitempty"`   // postgres
	PostgresTLS  string `json:"postgres_tls,omitempty"`  // require, prefer or disable
}

// FileInfo describes a stored file.
type FileInfo struct {
	Name     string `json:"name"`      // file name
	MimeType string `json:"mime_type"` // stored media type
	Size     int64  `json:"size"`      // size in bytes
}

// ExecResult is the outcome of SSHExec. A non-zero ExitCode is a result, not an error.
type ExecResult struct {
	Stdout          string `json:"stdout"`           // remote standard output (first 10 MiB)
	Stderr          string `json:"stderr"`           // remote standard error (first 10 MiB)
	ExitCode        int    `json:"exit_code"`        // remote exit status (124 when timed out)
	DurationMS      int64  `json:"duration_ms"`      // wall time of the command
	TimedOut        bool   `json:"timed_out"`        // the command was killed at its timeout
	StdoutTruncated bool   `json:"stdout_truncated"` // stdout was cut at 10 MiB
	StderrTruncated bool   `json:"stderr_truncated"` // stderr was cut at 10 MiB
}

// UploadResult is the outcome of SSHUpload.
type UploadResult struct {
	RemotePath string `json:"remote_path"` // the resolved remote path written
	Size       int64  `json:"size"`        // bytes written
	Mode       string `json:"mode"`        // octal mode, e.g. "0644"
}

// Session is a one-shot local address opened by Session: the vault has logged in upstream and
// accepts exactly one client connection at Addr until ExpiresAt. The client logs in locally with
// ClientSecret as its password (Redis AUTH, the Postgres password, IMAP LOGIN, SMTP AUTH), so that
// no other local process can use the port; a wrong one closes it for good.
type Session struct {
	Addr      string    `json:"addr"`       // "127.0.0.1:PORT" (on the vault server's host)
	ExpiresAt time.Time `json:"expires_at"` // when the unused listener closes
	// ClientSecret is the one-time password for the local login ("" when the session was opened
	// without one).
	ClientSecret string `json:"client_secret,omitempty"`
}

// TokenHealth is one entry of TokenHealth: the cached access token of an OAuth service.
type TokenHealth struct {
	Name     string `json:"name"`      // service name
	AuthType string `json:"auth_type"` // oauth2_client or service_account
	// ExpiresAt is the access token's expiry (RFC 3339), "" when none was fetched yet.
	ExpiresAt string `json:"expires_at"`
	// TokenStatus is valid, expiring (< 30 min left) or expired.
	TokenStatus string `json:"token_status"`
}

// OAuth2AuthorizeRequest starts the browser consent flow of OAuth2Authorize.
type OAuth2AuthorizeRequest struct {
	ClientSecretFile string   `json:"client_secret_file"`     // stored Google installed/web client JSON
	ServiceName      string   `json:"service_name"`           // the service to create
	BaseURL          string   `json:"base_url"`               // its base_url
	Scopes           []string `json:"scopes"`                 // OAuth scopes to ask for
	RedirectURI      string   `json:"redirect_uri,omitempty"` // default: the vault's /auth/oauth2/callback
	Overwrite        bool     `json:"overwrite"`              // replace an existing service of that name
}

// OAuth2Authorization is the answer of OAuth2Authorize: open AuthURL in a browser.
type OAuth2Authorization struct {
	AuthURL     string `json:"auth_url"`     // consent page URL (with state and PKCE challenge)
	Message     string `json:"message"`      // human-readable instructions
	RedirectURI string `json:"redirect_uri"` // where the provider sends the browser back
	State       string `json:"state"`        // one-time state of this flow
}
