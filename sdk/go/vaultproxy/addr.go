package vaultproxy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// DefaultAddr is the vault address used when neither an address nor $VAULT_ADDR is given.
const DefaultAddr = "http://127.0.0.1:8390"

// Environment variables read by New (and by the other constructors for empty arguments).
const (
	// AddrEnv names the variable holding the vault address (http(s)://host:port or unix:/path.sock).
	AddrEnv = "VAULT_ADDR"
	// TokenEnv names the variable holding the caller's token.
	TokenEnv = "VAULT_TOKEN"
)

// unixBaseURL is the base URL of requests sent over a unix socket (the host part is ignored).
const unixBaseURL = "http://localhost"

// address is a parsed vault address.
type address struct {
	display string // the address as shown to users (normalised)
	baseURL string // scheme://host[:port][/prefix], or unixBaseURL for a socket
	socket  string // unix socket path, when any
}

// resolveAddr returns addr, else $VAULT_ADDR, else DefaultAddr.
func resolveAddr(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		addr = strings.TrimSpace(os.Getenv(AddrEnv))
	}
	if addr == "" {
		addr = DefaultAddr
	}
	return addr
}

// isLoopbackHost reports whether host is localhost or a loopback IP literal.
func isLoopbackHost(host string) bool {
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func addrError(cause error, format string, args ...any) error {
	return &VaultError{Message: fmt.Sprintf(format, args...), Err: cause}
}

// parseAddr parses a vault address the way the Python SDK does: unix:/path.sock, bare host:port
// (taken as http://), or an http(s) URL. Plain http to a non-loopback host is refused unless
// allowInsecure.
func parseAddr(raw string, allowInsecure bool) (address, error) {
	raw = resolveAddr(raw)
	if strings.HasPrefix(raw, "unix:") {
		path := strings.TrimPrefix(raw, "unix:")
		if strings.HasPrefix(path, "//") { // unix:///run/vault.sock
			path = path[2:]
		}
		if !filepath.IsAbs(path) {
			return address{}, addrError(ErrInvalidAddress, "invalid vault address %q: unix socket path must be absolute", raw)
		}
		return address{display: "unix:" + path, baseURL: unixBaseURL, socket: path}, nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return address{}, addrError(ErrInvalidAddress, "invalid vault address %q: %v", raw, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return address{}, addrError(ErrInvalidAddress,
			"invalid vault address %q: use http(s)://host:port or unix:/path.sock", raw)
	}
	host := u.Hostname()
	if host == "" {
		return address{}, addrError(ErrInvalidAddress, "invalid vault address %q: missing host", raw)
	}
	if u.User != nil {
		return address{}, addrError(ErrInvalidAddress, "invalid vault address: credentials in the URL are not supported")
	}
	if port := u.Port(); port != "" {
		if _, err := net.LookupPort("tcp", port); err != nil {
			return address{}, addrError(ErrInvalidAddress, "invalid vault address %q: bad port %q", raw, port)
		}
	}
	if scheme == "http" && !allowInsecure && !isLoopbackHost(host) {
		return address{}, addrError(ErrInsecureAddress,
			"refusing plain http to non-loopback host %q: use https, or allow it explicitly (WithAllowInsecure)", host)
	}
	netloc := host
	if strings.Contains(host, ":") {
		netloc = "[" + host + "]"
	}
	if port := u.Port(); port != "" {
		netloc += ":" + port
	}
	base := scheme + "://" + netloc + strings.TrimRight(u.EscapedPath(), "/")
	return address{display: base, baseURL: base}, nil
}

// SessionPath returns the session file written by `vault-cli unlock`: $HOME/.vault-proxy/session.
func SessionPath() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".vault-proxy", "session")
}

// readSessionToken returns the token stored in the session file, or "" when there is none.
func readSessionToken() string {
	path := SessionPath()
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// resolveToken returns explicit, else $VAULT_TOKEN, else the session file's token (or "").
func resolveToken(explicit string) string {
	if t := strings.TrimSpace(explicit); t != "" {
		return t
	}
	if t := strings.TrimSpace(os.Getenv(TokenEnv)); t != "" {
		return t
	}
	return readSessionToken()
}
