package vaultproxy_test

// The test harness: TestMain starts a real vault-server (from $VAULT_SERVER_BIN, else
// vault-server on PATH) on a free loopback port with --allow-private 127.0.0.0/8 and, as the
// upstream of proxied calls, an httptest TLS server whose certificate is passed with --ca-file.
// Tests that need the server skip when no vault-server binary can be found.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vault-proxy/vault-proxy/sdk/go/vaultproxy"
)

// env is the shared test environment; nil when no vault-server was found (see skipReason).
var env *testEnv

// skipReason tells why server tests skip.
var skipReason string

type testEnv struct {
	bin      string
	tmp      string
	server   *serverProc
	admin    *vaultproxy.Client
	password string
	upstream *httptest.Server
	caFile   string
	rec      *recorder
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The tests choose their addresses and tokens explicitly.
	os.Unsetenv(vaultproxy.AddrEnv)
	os.Unsetenv(vaultproxy.TokenEnv)

	bin := os.Getenv("VAULT_SERVER_BIN")
	if bin == "" {
		if found, err := exec.LookPath("vault-server"); err == nil {
			bin = found
		}
	}
	if bin == "" {
		skipReason = "no vault-server: set VAULT_SERVER_BIN or put vault-server on PATH"
		return m.Run()
	}
	e, err := setup(bin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test setup failed: %v\n", err)
		if e != nil {
			e.teardown()
		}
		return 1
	}
	env = e
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "---- vault-server output ----\n%s\n", e.server.output())
	}
	e.teardown()
	return code
}

func setup(bin string) (*testEnv, error) {
	tmp, err := os.MkdirTemp("", "vp-go-sdk-")
	if err != nil {
		return nil, err
	}
	e := &testEnv{bin: bin, tmp: tmp, rec: newRecorder()}
	e.upstream = httptest.NewUnstartedServer(e.rec.handler())
	e.upstream.EnableHTTP2 = false
	e.upstream.StartTLS()
	e.caFile = filepath.Join(tmp, "upstream-ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.upstream.Certificate().Raw})
	if err := os.WriteFile(e.caFile, caPEM, 0o600); err != nil {
		return e, err
	}
	port, err := freePort()
	if err != nil {
		return e, err
	}
	e.server, err = startServer(bin, filepath.Join(tmp, "data"), fmt.Sprintf("127.0.0.1:%d", port), "--ca-file", e.caFile)
	if err != nil {
		return e, err
	}
	e.admin, err = vaultproxy.NewWithToken(e.server.addr, "")
	if err != nil {
		return e, err
	}
	e.password = randomHex(16)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.admin.Unlock(ctx, e.password); err != nil {
		return e, fmt.Errorf("unlock: %w\n%s", err, e.server.output())
	}
	return e, nil
}

func (e *testEnv) teardown() {
	if e.upstream != nil {
		// Streams a test abandoned may still be open between the vault and the upstream (the
		// vault notices a departed caller only at its next write): cut them so that the vault's
		// graceful shutdown does not wait for them.
		e.upstream.CloseClientConnections()
	}
	if e.server != nil {
		e.server.stop()
	}
	if e.upstream != nil {
		e.upstream.Close()
	}
	os.RemoveAll(e.tmp)
}

// needServer skips t when no vault-server is available and returns the environment.
func needServer(t *testing.T) *testEnv {
	t.Helper()
	if env == nil {
		t.Skip(skipReason)
	}
	return env
}

// ---- vault-server processes -------------------------------------------------------------------

type serverProc struct {
	cmd    *exec.Cmd
	addr   string // what a client is given: http://127.0.0.1:PORT or unix:/path
	out    *syncBuffer
	exited chan struct{}
}

// startServer runs vault-server listening on listen (host:port or unix:/path) and waits for /health.
func startServer(bin, dataDir, listen string, extra ...string) (*serverProc, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	args := []string{"--listen", listen, "--data-dir", dataDir, "--allow-private", "127.0.0.0/8",
		"--audit-log", filepath.Join(dataDir, "audit.jsonl")}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &serverProc{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	p.addr = listen
	if !strings.HasPrefix(listen, "unix:") {
		p.addr = "http://" + listen
	}
	client, err := vaultproxy.NewWithToken(p.addr, "", vaultproxy.WithTimeout(2*time.Second))
	if err != nil {
		p.stop()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := client.Health(context.Background()); err == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("vault-server exited at start-up:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("vault-server did not answer /health within 30 s:\n%s", out.String())
		}
	}
}

func (p *serverProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(8 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *serverProc) output() string { return p.out.String() }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ---- the upstream -----------------------------------------------------------------------------

// seen is one request as the upstream received it.
type seen struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       []byte
}

// recorder is the upstream's handler: it records what arrives and answers per path.
type recorder struct {
	mu       sync.Mutex
	requests []seen
	releases map[string]chan struct{}
}

func newRecorder() *recorder { return &recorder{releases: map[string]chan struct{}{}} }

// release returns the channel an /sse?id=ID handler waits on before its second event.
func (r *recorder) release(id string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.releases[id]
	if !ok {
		ch = make(chan struct{})
		r.releases[id] = ch
	}
	return ch
}

// last returns the last request whose URI contains marker.
func (r *recorder) last(t *testing.T, marker string) seen {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.requests) - 1; i >= 0; i-- {
		if strings.Contains(r.requests[i].RequestURI, marker) {
			return r.requests[i]
		}
	}
	t.Fatalf("the upstream never received a request containing %q", marker)
	return seen{}
}

// count returns how many requests' URI contains marker.
func (r *recorder) count(marker string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.requests {
		if strings.Contains(s.RequestURI, marker) {
			n++
		}
	}
	return n
}

func (r *recorder) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body []byte
		if !strings.Contains(req.URL.Path, "/big") {
			body, _ = io.ReadAll(req.Body)
		}
		r.mu.Lock()
		r.requests = append(r.requests, seen{Method: req.Method, RequestURI: req.RequestURI, Header: req.Header.Clone(), Body: body})
		r.mu.Unlock()

		path := req.URL.Path
		switch {
		case strings.HasSuffix(path, "/missing"):
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Upstream", "yes")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"detail":"no such thing upstream"}`)
		case strings.HasSuffix(path, "/fail"):
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "upstream exploded")
		case strings.HasSuffix(path, "/redirect"):
			http.Redirect(w, req, "https://"+req.Host+"/api/target", http.StatusFound)
		case strings.HasSuffix(path, "/big"):
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = io.Copy(w, req.Body)
		case strings.HasSuffix(path, "/sse"):
			r.serveSSE(w, req)
		case strings.HasSuffix(path, "/slow-headers"):
			select {
			case <-time.After(3 * time.Second):
			case <-req.Context().Done():
				return
			}
			io.WriteString(w, "late")
		case strings.HasSuffix(path, "/stall"):
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "first chunk\n")
			w.(http.Flusher).Flush()
			select {
			case <-time.After(3 * time.Second):
			case <-req.Context().Done():
				return
			}
			io.WriteString(w, "too late\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"method":%q,"path":%q,"body_len":%d}`, req.Method, req.URL.EscapedPath(), len(body))
		}
	})
}

// serveSSE sends one event, waits until the test releases it (it must have read that event
// through the vault by then), then two more.
func (r *recorder) serveSSE(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	flusher := w.(http.Flusher)
	io.WriteString(w, "data: one\n\n")
	flusher.Flush()
	select {
	case <-r.release(req.URL.Query().Get("id")):
	case <-time.After(10 * time.Second):
	case <-req.Context().Done():
		return
	}
	for _, ev := range []string{"two", "three"} {
		time.Sleep(20 * time.Millisecond)
		fmt.Fprintf(w, "data: %s\n\n", ev)
		flusher.Flush()
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

// ---- helpers ----------------------------------------------------------------------------------

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// uniqueName returns a fresh service/file name with the given prefix.
func uniqueName(prefix string) string { return prefix + "-" + randomHex(4) }

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantVaultError fails t unless err is a *VaultError with the status, whose message contains each of contains.
func wantVaultError(t *testing.T, err error, status int, contains ...string) *vaultproxy.VaultError {
	t.Helper()
	if err == nil {
		t.Fatalf("want a VaultError %d, got no error", status)
	}
	var verr *vaultproxy.VaultError
	if !errors.As(err, &verr) {
		t.Fatalf("want a *VaultError %d, got %T: %v", status, err, err)
	}
	if verr.StatusCode != status {
		t.Fatalf("want status %d, got %d: %q", status, verr.StatusCode, verr.Message)
	}
	for _, part := range contains {
		if !strings.Contains(verr.Message, part) {
			t.Fatalf("message %q should contain %q", verr.Message, part)
		}
	}
	return verr
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// addBearer adds a bearer service pointing at the upstream (base_url .../api) and returns its name and secret.
func addBearer(t *testing.T, e *testEnv, prefix string) (string, string) {
	t.Helper()
	name, secret := uniqueName(prefix), "sk-"+randomHex(16)
	_, err := e.admin.AddService(testCtx(t), vaultproxy.Service{
		Name: name, BaseURL: e.upstream.URL + "/api", Auth: vaultproxy.BearerAuth(secret),
	})
	noErr(t, err)
	t.Cleanup(func() { _ = e.admin.RemoveService(context.Background(), name) })
	return name, secret
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	noErr(t, err)
	return data
}
