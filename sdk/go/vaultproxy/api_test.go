package vaultproxy_test

// Tests of the vault's own API against the shared vault-server: health, unlock, services,
// tokens, files, OAuth helpers.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vault-proxy/vault-proxy/sdk/go/vaultproxy"
)

func TestHealthAndUnlock(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)

	h, err := e.admin.Health(ctx)
	noErr(t, err)
	if !h.Unlocked() || h.Status != "unlocked" {
		t.Fatalf("health = %+v, want unlocked", h)
	}

	other, err := vaultproxy.NewWithToken(e.server.addr, "")
	noErr(t, err)
	_, err = other.Unlock(ctx, "not-the-password")
	wantVaultError(t, err, http.StatusUnauthorized, "wrong password")
	if other.Token() != "" {
		t.Fatal("a failed unlock must not set a token")
	}

	// Unlocking an unlocked vault with the right password mints another admin token.
	tok, err := other.Unlock(ctx, e.password)
	noErr(t, err)
	if len(tok.ID) != 64 || tok.Scope != vaultproxy.ScopeAdmin || other.Token() != tok.ID || tok.ID == e.admin.Token() {
		t.Fatalf("unlock token = %+v (client token %q)", tok, other.Token())
	}
	if !tok.ExpiresAt.After(tok.CreatedAt) {
		t.Fatalf("token times: %+v", tok)
	}
	tokens, err := other.ListTokens(ctx)
	noErr(t, err)
	if !hasPrefix(tokens, tok.ID[:12]) {
		t.Fatalf("the new admin token is not listed: %+v", tokens)
	}
	noErr(t, e.admin.RevokeToken(ctx, tok.ID))
	_, err = other.ListTokens(ctx)
	wantVaultError(t, err, http.StatusUnauthorized)
}

func TestServicesCRUD(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, secret := uniqueName("crud"), "sk-"+randomHex(16)

	info, err := e.admin.AddService(ctx, vaultproxy.Service{
		Name: name, BaseURL: e.upstream.URL + "/api", Auth: vaultproxy.BearerAuth(secret), SessionCookies: true,
	})
	noErr(t, err)
	if info.Name != name || info.AuthType != "bearer" || info.BaseURL != e.upstream.URL+"/api" || !info.SessionCookies {
		t.Fatalf("AddService answered %+v", info)
	}

	got, err := e.admin.GetService(ctx, name)
	noErr(t, err)
	if got.Name != name || got.AuthType != "bearer" {
		t.Fatalf("GetService answered %+v", got)
	}

	list, err := e.admin.ListServices(ctx)
	noErr(t, err)
	names := make([]string, 0, len(list))
	for _, s := range list {
		names = append(names, s.Name)
	}
	if !sort.StringsAreSorted(names) || !contains(names, name) {
		t.Fatalf("ListServices: %v", names)
	}

	// PUT replaces the service; the name comes from the path.
	upd, err := e.admin.UpdateService(ctx, name, vaultproxy.Service{
		BaseURL: e.upstream.URL + "/v2", Auth: vaultproxy.HeaderAuth("X-Api-Key", secret),
	})
	noErr(t, err)
	if upd.Name != name || upd.AuthType != "header" || upd.HeaderName != "X-Api-Key" || upd.BaseURL != e.upstream.URL+"/v2" {
		t.Fatalf("UpdateService answered %+v", upd)
	}

	basic, err := e.admin.UpdateService(ctx, name, vaultproxy.Service{
		Name: name, BaseURL: e.upstream.URL, Auth: vaultproxy.BasicAuth("alice", secret),
	})
	noErr(t, err)
	if basic.AuthType != "basic" || basic.Username != "alice" {
		t.Fatalf("basic: %+v", basic)
	}

	// ServiceInfo never holds the secret; neither does anything else the vault answered.
	for _, s := range []*vaultproxy.ServiceInfo{info, got, upd, basic} {
		if strings.Contains(strings.ToLower(toJSON(t, s)), secret) {
			t.Fatalf("ServiceInfo leaks the secret: %+v", s)
		}
	}

	noErr(t, e.admin.RemoveService(ctx, name))
	_, err = e.admin.GetService(ctx, name)
	wantVaultError(t, err, http.StatusNotFound, name, "not found")
	err = e.admin.RemoveService(ctx, name)
	wantVaultError(t, err, http.StatusNotFound)

	// Bad bodies are a 400 naming the problem.
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: uniqueName("bad"), BaseURL: e.upstream.URL, Auth: vaultproxy.Auth{"type": "bearer"}})
	wantVaultError(t, err, http.StatusBadRequest, "token")
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: "a b", BaseURL: e.upstream.URL, Auth: vaultproxy.BearerAuth("x")})
	wantVaultError(t, err, http.StatusBadRequest, "name")
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: uniqueName("bad"), Auth: vaultproxy.BearerAuth("x")})
	wantVaultError(t, err, http.StatusBadRequest, "base_url")
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: uniqueName("bad"), BaseURL: e.upstream.URL, Auth: vaultproxy.Auth{"type": "nope"}})
	wantVaultError(t, err, http.StatusBadRequest)

	// Names that need escaping reach the server intact.
	_, err = e.admin.GetService(ctx, "no such/service?#")
	wantVaultError(t, err, http.StatusNotFound)
}

func TestNonHTTPServiceInfo(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name := uniqueName("redis-info")
	info, err := e.admin.AddService(ctx, vaultproxy.Service{Name: name, Auth: vaultproxy.Auth{
		"type": "redis", "redis_host": "127.0.0.1", "redis_port": 6380, "redis_password": "pw-" + randomHex(8), "redis_db": 2,
	}})
	noErr(t, err)
	defer e.admin.RemoveService(ctx, name)
	if info.AuthType != "redis" || info.RedisHost != "127.0.0.1" || info.RedisPort != 6380 || info.RedisDB != 2 || info.BaseURL != "" {
		t.Fatalf("redis ServiceInfo: %+v", info)
	}
}

func TestTokens(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	allowed, allowedSecret := addBearer(t, e, "tok-allowed")
	other, _ := addBearer(t, e, "tok-other")

	label := uniqueName("agent")
	tok, err := e.admin.CreateToken(ctx, vaultproxy.TokenRequest{
		Scope: vaultproxy.ScopeProxy, Services: []string{allowed}, TTL: time.Hour, Name: label,
	})
	noErr(t, err)
	if len(tok.ID) != 64 || tok.Scope != "proxy" || tok.Name != label || len(tok.Services) != 1 || tok.Services[0] != allowed {
		t.Fatalf("CreateToken answered %+v", tok)
	}
	if lifetime := tok.ExpiresAt.Sub(tok.CreatedAt); lifetime < 59*time.Minute || lifetime > 61*time.Minute {
		t.Fatalf("ttl: lifetime %s", lifetime)
	}

	tokens, err := e.admin.ListTokens(ctx)
	noErr(t, err)
	var listed *vaultproxy.Token
	for i := range tokens {
		if tokens[i].IDPrefix == tok.ID[:12] {
			listed = &tokens[i]
		}
		if tokens[i].ID != "" {
			t.Fatalf("ListTokens shows a full token: %+v", tokens[i])
		}
	}
	if listed == nil || listed.Name != label || listed.Scope != "proxy" || len(listed.Services) != 1 {
		t.Fatalf("ListTokens: %+v", tokens)
	}

	agent, err := vaultproxy.NewWithToken(e.server.addr, tok.ID)
	noErr(t, err)
	services, err := agent.ListServices(ctx)
	noErr(t, err)
	if len(services) != 1 || services[0].Name != allowed {
		t.Fatalf("a restricted token sees %+v", services)
	}
	_, err = agent.GetService(ctx, other)
	wantVaultError(t, err, http.StatusNotFound)

	resp, err := agent.Proxy(ctx, allowed, "GET", "echo/restricted", nil, nil)
	noErr(t, err)
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("proxy with the restricted token: %d", resp.StatusCode)
	}
	got := e.rec.last(t, "/echo/restricted")
	if got.Header.Get("Authorization") != "Bearer "+allowedSecret {
		t.Fatalf("upstream saw Authorization %q", got.Header.Get("Authorization"))
	}
	assertTokenNotForwarded(t, got, tok.ID)

	_, err = agent.Proxy(ctx, other, "GET", "echo/forbidden", nil, nil)
	wantVaultError(t, err, http.StatusNotFound, other)
	if e.rec.count("/echo/forbidden") != 0 {
		t.Fatal("a refused call reached the upstream")
	}

	// A proxy token cannot use admin routes.
	_, err = agent.ListTokens(ctx)
	wantVaultError(t, err, http.StatusForbidden, "admin scope required")
	_, err = agent.AddService(ctx, vaultproxy.Service{Name: uniqueName("x"), BaseURL: e.upstream.URL, Auth: vaultproxy.BearerAuth("x")})
	wantVaultError(t, err, http.StatusForbidden)

	// Revocation: short prefixes are refused, a 12-char prefix works.
	err = e.admin.RevokeToken(ctx, tok.ID[:4])
	wantVaultError(t, err, http.StatusBadRequest, "at least 8")
	err = e.admin.RevokeToken(ctx, strings.Repeat("0", 12))
	wantVaultError(t, err, http.StatusNotFound)
	noErr(t, e.admin.RevokeToken(ctx, tok.ID[:12]))
	_, err = agent.ListServices(ctx)
	wantVaultError(t, err, http.StatusUnauthorized)

	// Scope defaults to proxy; an admin token can do admin things.
	def, err := e.admin.CreateToken(ctx, vaultproxy.TokenRequest{TTL: 90 * time.Second})
	noErr(t, err)
	if def.Scope != "proxy" {
		t.Fatalf("default scope: %+v", def)
	}
	adm, err := e.admin.CreateToken(ctx, vaultproxy.TokenRequest{Scope: vaultproxy.ScopeAdmin, Name: "second-admin"})
	noErr(t, err)
	second, _ := vaultproxy.NewWithToken(e.server.addr, adm.ID)
	_, err = second.ListTokens(ctx)
	noErr(t, err)
	noErr(t, e.admin.RevokeToken(ctx, def.ID))
	noErr(t, e.admin.RevokeToken(ctx, adm.ID))

	_, err = e.admin.CreateToken(ctx, vaultproxy.TokenRequest{Scope: "root"})
	wantVaultError(t, err, http.StatusBadRequest)
}

func TestFiles(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)

	// Binary content: every byte value, then random bytes.
	data := make([]byte, 256, 256+64*1024)
	for i := range data {
		data[i] = byte(i)
	}
	random := make([]byte, 64*1024)
	_, _ = rand.Read(random)
	data = append(data, random...)

	blob := uniqueName("blob") + ".bin"
	info, err := e.admin.UploadFile(ctx, blob, data, "")
	noErr(t, err)
	if info.Name != blob || info.Size != int64(len(data)) || info.MimeType != "application/octet-stream" {
		t.Fatalf("UploadFile answered %+v", info)
	}
	notes := uniqueName("my notes #1") + ".txt"
	info2, err := e.admin.UploadFile(ctx, notes, []byte("hello\n"), "")
	noErr(t, err)
	if info2.MimeType != "text/plain" {
		t.Fatalf("guessed mime type %q", info2.MimeType)
	}
	custom := uniqueName("doc")
	info3, err := e.admin.UploadFile(ctx, custom, []byte(`{"a":1}`), "application/json")
	noErr(t, err)
	if info3.MimeType != "application/json" {
		t.Fatalf("explicit mime type %q", info3.MimeType)
	}

	files, err := e.admin.ListFiles(ctx)
	noErr(t, err)
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if !sort.StringsAreSorted(names) || !contains(names, blob) || !contains(names, notes) || !contains(names, custom) {
		t.Fatalf("ListFiles: %v", names)
	}

	back, err := e.admin.GetFile(ctx, blob)
	noErr(t, err)
	if !bytes.Equal(back, data) {
		t.Fatalf("GetFile returned %d bytes, different from the %d uploaded", len(back), len(data))
	}
	back, err = e.admin.GetFile(ctx, notes)
	noErr(t, err)
	if string(back) != "hello\n" {
		t.Fatalf("GetFile(%q) = %q", notes, back)
	}

	for _, name := range []string{blob, notes, custom} {
		noErr(t, e.admin.DeleteFile(ctx, name))
	}
	_, err = e.admin.GetFile(ctx, blob)
	wantVaultError(t, err, http.StatusNotFound, "not found")
	err = e.admin.DeleteFile(ctx, blob)
	wantVaultError(t, err, http.StatusNotFound)

	_, err = e.admin.UploadFile(ctx, "../escape", []byte("x"), "")
	wantVaultError(t, err, http.StatusBadRequest)
	_, err = e.admin.UploadFile(ctx, uniqueName("huge"), make([]byte, 5*1024*1024+1), "")
	wantVaultError(t, err, http.StatusRequestEntityTooLarge, "too large")
}

func TestTokenHealthAndOAuth2Authorize(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)

	health, err := e.admin.TokenHealth(ctx)
	noErr(t, err)
	if health == nil {
		t.Fatal("TokenHealth should return an empty slice, not nil")
	}

	secretFile := uniqueName("client-secret") + ".json"
	clientJSON := `{"installed":{"client_id":"cid-123.apps.example","client_secret":"cs-` + randomHex(8) + `",` +
		`"auth_uri":"https://accounts.example.com/o/oauth2/auth","token_uri":"` + e.upstream.URL + `/token",` +
		`"redirect_uris":["http://127.0.0.1"]}}`
	_, err = e.admin.UploadFile(ctx, secretFile, []byte(clientJSON), "application/json")
	noErr(t, err)
	defer e.admin.DeleteFile(ctx, secretFile)

	svc := uniqueName("oauth")
	auth, err := e.admin.OAuth2Authorize(ctx, vaultproxy.OAuth2AuthorizeRequest{
		ClientSecretFile: secretFile, ServiceName: svc, BaseURL: e.upstream.URL + "/api",
		Scopes: []string{"scope.read"},
	})
	noErr(t, err)
	if auth.State == "" || !strings.Contains(auth.AuthURL, "code_challenge=") || !strings.Contains(auth.AuthURL, auth.State) {
		t.Fatalf("OAuth2Authorize answered %+v", auth)
	}
	if !strings.HasPrefix(auth.AuthURL, "https://accounts.example.com/") || auth.RedirectURI == "" {
		t.Fatalf("OAuth2Authorize answered %+v", auth)
	}

	_, err = e.admin.OAuth2Authorize(ctx, vaultproxy.OAuth2AuthorizeRequest{
		ClientSecretFile: uniqueName("missing"), ServiceName: svc, BaseURL: e.upstream.URL,
	})
	if err == nil {
		t.Fatal("OAuth2Authorize with an unknown client secret file should fail")
	}
}

// ---- helpers ----------------------------------------------------------------------------------

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	noErr(t, err)
	return string(data)
}

func hasPrefix(tokens []vaultproxy.Token, prefix string) bool {
	for _, tok := range tokens {
		if tok.IDPrefix == prefix {
			return true
		}
	}
	return false
}

// assertTokenNotForwarded fails unless no header the upstream received holds the vault token.
func assertTokenNotForwarded(t *testing.T, got seen, token string) {
	t.Helper()
	for name, values := range got.Header {
		for _, v := range values {
			if strings.Contains(v, token) {
				t.Fatalf("the vault token reached the upstream in %s", name)
			}
		}
	}
	if got.Header.Get("X-Vault-Token") != "" || got.Header.Get("X-Api-Key") != "" {
		t.Fatalf("vault token headers reached the upstream: %v", got.Header)
	}
}
