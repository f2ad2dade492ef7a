package vaultproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ---- health, unlock, lock ---------------------------------------------------------------------

// Health returns whether the vault is locked; it needs no token.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var out Health
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/health", noAuth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TokenHealth lists the cached access tokens of the OAuth services (oauth2_client,
// service_account) the caller may use; empty (not nil) when there are none.
func (c *Client) TokenHealth(ctx context.Context) ([]TokenHealth, error) {
	out := []TokenHealth{}
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/health/tokens"}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Unlock unlocks the vault (creating it on first use; the password must have at least 8
// characters) and returns the new admin token, which this client uses from now on.
func (c *Client) Unlock(ctx context.Context, password string) (*Token, error) {
	body, err := jsonBody(map[string]string{"password": password})
	if err != nil {
		return nil, err
	}
	var out Token
	r := request{method: http.MethodPost, path: "/auth/unlock", body: body, contentType: "application/json", noAuth: true}
	if err := c.doJSON(ctx, r, &out); err != nil {
		return nil, err
	}
	c.SetToken(out.ID)
	return &out, nil
}

// Lock locks the vault. Every token is revoked, this client's included, which it forgets.
func (c *Client) Lock(ctx context.Context) error {
	if err := c.doJSON(ctx, request{method: http.MethodPost, path: "/auth/lock"}, nil); err != nil {
		return err
	}
	c.SetToken("")
	return nil
}

// ChangePassword changes the master password (admin). A wrong current password is a 401 and
// counts as a failed unlock.
func (c *Client) ChangePassword(ctx context.Context, current, newPassword string) error {
	body, err := jsonBody(map[string]string{"current_password": current, "new_password": newPassword})
	if err != nil {
		return err
	}
	r := request{method: http.MethodPost, path: "/auth/passwd", body: body, contentType: "application/json"}
	return c.doJSON(ctx, r, nil)
}

// OAuth2Authorize starts the browser consent flow for an oauth2_client service (admin); open
// the returned AuthURL. The service is created when the provider redirects back to the vault.
func (c *Client) OAuth2Authorize(ctx context.Context, req OAuth2AuthorizeRequest) (*OAuth2Authorization, error) {
	if req.Scopes == nil {
		req.Scopes = []string{}
	}
	body, err := jsonBody(req)
	if err != nil {
		return nil, err
	}
	var out OAuth2Authorization
	r := request{method: http.MethodPost, path: "/auth/oauth2/authorize", body: body, contentType: "application/json"}
	if err := c.doJSON(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ---- services ---------------------------------------------------------------------------------

// ListServices returns the ServiceInfo of every service this token may see, sorted by name.
func (c *Client) ListServices(ctx context.Context) ([]ServiceInfo, error) {
	out := []ServiceInfo{}
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/services"}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetService returns one service's ServiceInfo; an unknown service is a *VaultError with
// StatusCode 404.
func (c *Client) GetService(ctx context.Context, name string) (*ServiceInfo, error) {
	if name == "" {
		return nil, emptyName("service")
	}
	var out ServiceInfo
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/services/" + segment(name)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddService creates or replaces a service (admin) and returns its ServiceInfo. Validation
// errors are a *VaultError with StatusCode 400 naming the field.
func (c *Client) AddService(ctx context.Context, svc Service) (*ServiceInfo, error) {
	return c.putService(ctx, http.MethodPost, "/services", svc)
}

// UpdateService replaces service name (admin); the name comes from the path, not svc.Name.
func (c *Client) UpdateService(ctx context.Context, name string, svc Service) (*ServiceInfo, error) {
	if name == "" {
		return nil, emptyName("service")
	}
	if svc.Name == "" {
		svc.Name = name
	}
	return c.putService(ctx, http.MethodPut, "/services/"+segment(name), svc)
}

func (c *Client) putService(ctx context.Context, method, path string, svc Service) (*ServiceInfo, error) {
	body, err := jsonBody(svc)
	if err != nil {
		return nil, err
	}
	var out ServiceInfo
	if err := c.doJSON(ctx, request{method: method, path: path, body: body, contentType: "application/json"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveService deletes a service (admin).
func (c *Client) RemoveService(ctx context.Context, name string) error {
	if name == "" {
		return emptyName("service")
	}
	return c.doJSON(ctx, request{method: http.MethodDelete, path: "/services/" + segment(name)}, nil)
}

// ---- tokens -----------------------------------------------------------------------------------

// CreateToken mints a token (admin). The returned Token's ID is the only time the full token is shown.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*Token, error) {
	payload := map[string]any{"scope": req.Scope}
	if req.Scope == "" {
		payload["scope"] = ScopeProxy
	}
	if len(req.Services) > 0 {
		payload["services"] = req.Services
	}
	if req.TTL < 0 {
		return nil, &VaultError{Message: "ttl must be positive"}
	}
	if req.TTL > 0 {
		secs := int64((req.TTL + time.Second - 1) / time.Second)
		payload["ttl"] = strconv.FormatInt(secs, 10) + "s"
	}
	if req.Name != "" {
		payload["name"] = req.Name
	}
	body, err := jsonBody(payload)
	if err != nil {
		return nil, err
	}
	var out Token
	if err := c.doJSON(ctx, request{method: http.MethodPost, path: "/tokens", body: body, contentType: "application/json"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListTokens lists the live tokens (admin) by IDPrefix, sorted by creation time.
func (c *Client) ListTokens(ctx context.Context) ([]Token, error) {
	out := []Token{}
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/tokens"}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeToken revokes a token (admin) by its full ID or a unique prefix of 8–12 hex characters
// (its IDPrefix).
func (c *Client) RevokeToken(ctx context.Context, idOrPrefix string) error {
	if idOrPrefix == "" {
		return emptyName("token")
	}
	return c.doJSON(ctx, request{method: http.MethodDelete, path: "/tokens/" + segment(idOrPrefix)}, nil)
}

// ---- files ------------------------------------------------------------------------------------

// UploadFile stores a file of at most 5 MiB (admin). An empty mimeType lets the server guess it
// from the name (application/octet-stream when it cannot).
func (c *Client) UploadFile(ctx context.Context, name string, data []byte, mimeType string) (*FileInfo, error) {
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("name", name); err != nil {
		return nil, err
	}
	part, err := mw.CreatePart(filePartHeader("file", name, mimeType))
	if err != nil {
		return nil, err
	}
	if _, err := part.Write(data); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	var out FileInfo
	r := request{method: http.MethodPost, path: "/files", body: &buf, contentType: mw.FormDataContentType()}
	if err := c.doJSON(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListFiles lists the stored files (admin), sorted by name.
func (c *Client) ListFiles(ctx context.Context) ([]FileInfo, error) {
	out := []FileInfo{}
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/files"}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetFile returns the stored bytes of a file (admin).
func (c *Client) GetFile(ctx context.Context, name string) ([]byte, error) {
	if name == "" {
		return nil, emptyName("file")
	}
	return c.doRaw(ctx, request{method: http.MethodGet, path: "/files/" + segment(name)})
}

// DeleteFile deletes a file (admin); refused with 409 while a service references it.
func (c *Client) DeleteFile(ctx context.Context, name string) error {
	if name == "" {
		return emptyName("file")
	}
	return c.doJSON(ctx, request{method: http.MethodDelete, path: "/files/" + segment(name)}, nil)
}

// ---- SSH --------------------------------------------------------------------------------------

// SSHExec runs command on an ssh_key service. timeout is the remote command's limit (0: the
// server's default of 30 s; at most 300 s); when it passes the command is killed and the result
// has TimedOut set and ExitCode 124. The client's own timeout is extended by it.
func (c *Client) SSHExec(ctx context.Context, service, command string, timeout time.Duration) (*ExecResult, error) {
	if service == "" {
		return nil, emptyName("service")
	}
	payload := map[string]any{"command": command}
	wait := 30 * time.Second
	if timeout > 0 {
		payload["timeout"] = timeout.Seconds()
		wait = timeout
	}
	body, err := jsonBody(payload)
	if err != nil {
		return nil, err
	}
	var out ExecResult
	r := request{method: http.MethodPost, path: "/ssh/" + segment(service) + "/exec", body: body,
		contentType: "application/json", extraTime: wait}
	if err := c.doJSON(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SSHUpload streams content (at most 50 MiB) to remotePath on an ssh_key service with the given
// permission bits (0 means 0644). remotePath must be absolute and outside system locations.
func (c *Client) SSHUpload(ctx context.Context, service string, content io.Reader, remotePath string, mode os.FileMode) (*UploadResult, error) {
	if service == "" {
		return nil, emptyName("service")
	}
	if mode == 0 {
		mode = 0o644
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := writeUploadForm(mw, content, remotePath, mode)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	var out UploadResult
	r := request{method: http.MethodPost, path: "/ssh/" + segment(service) + "/upload", body: pr,
		contentType: mw.FormDataContentType(), extraTime: c.timeout}
	err := c.doJSON(ctx, r, &out)
	pr.CloseWithError(io.ErrClosedPipe) // unblock the writer if the server answered early
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func writeUploadForm(mw *multipart.Writer, content io.Reader, remotePath string, mode os.FileMode) error {
	if err := mw.WriteField("remote_path", remotePath); err != nil {
		return err
	}
	if err := mw.WriteField("mode", octalMode(mode)); err != nil {
		return err
	}
	part, err := mw.CreatePart(filePartHeader("file", "upload", "application/octet-stream"))
	if err != nil {
		return err
	}
	if content != nil {
		_, err = io.Copy(part, content)
	}
	return err
}

// SSHDownload returns the bytes of remotePath on an ssh_key service (at most 50 MiB).
func (c *Client) SSHDownload(ctx context.Context, service, remotePath string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := c.SSHDownloadTo(ctx, service, remotePath, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SSHDownloadTo streams remotePath on an ssh_key service into w and returns the bytes written.
func (c *Client) SSHDownloadTo(ctx context.Context, service, remotePath string, w io.Writer) (int64, error) {
	if service == "" {
		return 0, emptyName("service")
	}
	body, err := jsonBody(map[string]string{"remote_path": remotePath})
	if err != nil {
		return 0, err
	}
	r := request{method: http.MethodPost, path: "/ssh/" + segment(service) + "/download", body: body,
		contentType: "application/json", extraTime: c.timeout}
	resp, cancel, err := c.send(ctx, r)
	if err != nil {
		return 0, err
	}
	defer cancel()
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, c.transportError(ctx, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, &VaultError{Message: fmt.Sprintf("download of %s truncated (%d of %d bytes)", remotePath, n, resp.ContentLength)}
	}
	return n, nil
}

// ---- TCP sessions -----------------------------------------------------------------------------

// Session opens an auth-only TCP session: proto is "imap", "smtp", "redis" or "postgres". The
// vault logs in to the service first, then returns a one-shot local address for one client
// connection (which needs no real credentials). timeout is how long the address waits for that
// connection (0: the server's default of 30 s; 1 s to 300 s, whole seconds, rounded up).
func (c *Client) Session(ctx context.Context, proto, service string, timeout time.Duration) (*Session, error) {
	if proto == "" {
		return nil, emptyName("protocol")
	}
	if service == "" {
		return nil, emptyName("service")
	}
	var query url.Values
	if timeout > 0 {
		secs := int64((timeout + time.Second - 1) / time.Second)
		query = url.Values{"timeout": {strconv.FormatInt(secs, 10)}}
	}
	var out Session
	r := request{method: http.MethodPost, path: "/" + segment(proto) + "/" + segment(service) + "/session", query: query,
		extraTime: 15 * time.Second}
	if err := c.doJSON(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ---- helpers ----------------------------------------------------------------------------------

// octalMode formats permission bits (with setuid, setgid and sticky) as the octal string the server expects.
func octalMode(m os.FileMode) string {
	v := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

func emptyName(what string) error {
	return &VaultError{Message: what + " name must not be empty"}
}

var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"", "\r", "", "\n", "")

// filePartHeader is the MIME header of a multipart file part with an explicit Content-Type.
func filePartHeader(field, filename, contentType string) textproto.MIMEHeader {
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition",
		fmt.Sprintf(`form-data; name="%s"; filename="%s"`, quoteEscaper.Replace(field), quoteEscaper.Replace(filename)))
	h.Set("Content-Type", contentType)
	return h
}
