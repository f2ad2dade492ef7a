package vaultproxy_test

// Proxy tests: credential injection, upstream statuses as responses, vault errors, redirects,
// streaming, large bodies and timeouts, through the shared vault-server to the TLS upstream.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-proxy/vault-proxy/sdk/go/vaultproxy"
)

func TestProxyInjectsCredential(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, secret := addBearer(t, e, "inject")

	header := http.Header{}
	header.Set("X-Custom", "kept")
	header.Set("Content-Type", "text/plain")
	resp, err := e.admin.Proxy(ctx, name, "post", "/echo/a%2Fb?x=1&y=%3F", strings.NewReader("hello upstream"), header)
	noErr(t, err)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"body_len":14`) || !strings.Contains(string(body), `"method":"POST"`) {
		t.Fatalf("upstream answer: %s", body)
	}

	got := e.rec.last(t, "/echo/a%2Fb")
	if got.Header.Get("Authorization") != "Bearer "+secret {
		t.Fatalf("the upstream saw Authorization %q, want the service's bearer token", got.Header.Get("Authorization"))
	}
	if got.RequestURI != "/api/echo/a%2Fb?x=1&y=%3F" {
		t.Fatalf("path/query not forwarded as encoded: %q", got.RequestURI)
	}
	if got.Method != "POST" || string(got.Body) != "hello upstream" || got.Header.Get("X-Custom") != "kept" {
		t.Fatalf("upstream saw %s %q headers %v", got.Method, got.Body, got.Header)
	}
	assertTokenNotForwarded(t, got, e.admin.Token())

	// The vault's security headers are on the answer, once.
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || len(resp.Header.Values("X-Frame-Options")) != 1 {
		t.Fatalf("security headers: %v", resp.Header)
	}
	if resp.Header.Get(vaultproxy.VaultErrorHeader) != "" {
		t.Fatal("an upstream answer must not carry X-Vault-Error")
	}

	// The secret echoed by an upstream is scrubbed (the vault's own feature, seen through the SDK).
	resp, err = e.admin.Proxy(ctx, name, "POST", "big", strings.NewReader("echo: "+secret), nil)
	noErr(t, err)
	if echoed := readAll(t, resp); strings.Contains(string(echoed), secret) || !strings.Contains(string(echoed), "[REDACTED]") {
		t.Fatalf("echoed secret not scrubbed: %q", echoed)
	}
}

func TestProxyUpstreamStatusIsNotAnError(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, _ := addBearer(t, e, "status")

	resp, err := e.admin.Proxy(ctx, name, "GET", "missing", nil, nil)
	if err != nil {
		t.Fatalf("an upstream 404 must be a response, got error %v", err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Upstream") != "yes" || !strings.Contains(string(body), "no such thing upstream") {
		t.Fatalf("upstream 404: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	resp, err = e.admin.Proxy(ctx, name, "DELETE", "fail", nil, nil)
	noErr(t, err)
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusInternalServerError || string(body) != "upstream exploded" {
		t.Fatalf("upstream 500: %d %s", resp.StatusCode, body)
	}
}

func TestProxyVaultErrors(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, _ := addBearer(t, e, "verr")

	_, err := e.admin.Proxy(ctx, uniqueName("nope"), "GET", "x", nil, nil)
	wantVaultError(t, err, http.StatusNotFound, "not found")

	stranger, _ := vaultproxy.NewWithToken(e.server.addr, randomHex(32))
	_, err = stranger.Proxy(ctx, name, "GET", "x", nil, nil)
	wantVaultError(t, err, http.StatusUnauthorized, "invalid token")
	anonymous, _ := vaultproxy.NewWithToken(e.server.addr, "")
	anonymous.SetToken("")
	_, err = anonymous.Proxy(ctx, name, "GET", "x", nil, nil)
	wantVaultError(t, err, http.StatusUnauthorized, "authorization required")

	// An upstream that cannot be reached is a vault error (502), not a response.
	port, err := freePort()
	noErr(t, err)
	dead := uniqueName("dead")
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: dead, BaseURL: fmt.Sprintf("https://127.0.0.1:%d", port), Auth: vaultproxy.BearerAuth("x-secret")})
	noErr(t, err)
	defer e.admin.RemoveService(ctx, dead)
	_, err = e.admin.Proxy(ctx, dead, "GET", "x", nil, nil)
	wantVaultError(t, err, http.StatusBadGateway)

	// A non-HTTP service cannot be proxied.
	redis := uniqueName("redis")
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: redis, Auth: vaultproxy.Auth{"type": "redis", "redis_host": "127.0.0.1"}})
	noErr(t, err)
	defer e.admin.RemoveService(ctx, redis)
	_, err = e.admin.Proxy(ctx, redis, "GET", "x", nil, nil)
	wantVaultError(t, err, http.StatusBadRequest, "not an HTTP service")
}

func TestProxyRedirectNotFollowed(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, _ := addBearer(t, e, "redir")
	resp, err := e.admin.Proxy(ctx, name, "GET", "redirect", nil, nil)
	noErr(t, err)
	readAll(t, resp)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("a redirect must be returned, not followed: %d", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "/proxy/"+name+"/target" {
		t.Fatalf("Location %q, want the rewritten /proxy/%s/target", loc, name)
	}
	if e.rec.count("/api/target") != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestProxyStreaming(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, _ := addBearer(t, e, "sse")
	id := randomHex(6)
	release := e.rec.release(id)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	header := http.Header{"Accept": {"text/event-stream"}}
	resp, err := e.admin.Proxy(ctx, name, "GET", "sse?id="+id, nil, header)
	noErr(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE answer: %d %v", resp.StatusCode, resp.Header)
	}

	// The upstream holds the rest of the stream until we have read the first event: if anything
	// on the way buffered the body, the first event would never arrive.
	events := make(chan string, 8)
	go func() {
		defer close(events)
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			if line := scanner.Text(); strings.HasPrefix(line, "data: ") {
				events <- strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	select {
	case first := <-events:
		if first != "one" {
			t.Fatalf("first event %q", first)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive before the stream ended: the body is buffered, not streamed")
	}
	close(release)
	var rest []string
	for ev := range events {
		rest = append(rest, ev)
	}
	if strings.Join(rest, ",") != "two,three,[DONE]" {
		t.Fatalf("rest of the stream: %v", rest)
	}
}

func TestProxyLargeBody(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, _ := addBearer(t, e, "large")
	payload := make([]byte, 3<<20)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)

	resp, err := e.admin.Proxy(ctx, name, "PUT", "big", bytes.NewReader(payload), http.Header{"Content-Type": {"application/octet-stream"}})
	noErr(t, err)
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	noErr(t, err)
	if resp.StatusCode != 200 || n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d bytes (status %d), want the %d sent back unchanged", n, resp.StatusCode, len(payload))
	}

	// Over the default 10 MiB cap (with a Content-Length): the vault answers 413 itself.
	_, err = e.admin.Proxy(ctx, name, "POST", "big", bytes.NewReader(make([]byte, 11<<20)), nil)
	wantVaultError(t, err, http.StatusRequestEntityTooLarge, "too large")
}

func TestProxyTimeouts(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	name, _ := addBearer(t, e, "slow")
	quick, err := vaultproxy.NewWithToken(e.server.addr, e.admin.Token(), vaultproxy.WithTimeout(700*time.Millisecond))
	noErr(t, err)

	// No response headers in time.
	start := time.Now()
	_, err = quick.Proxy(ctx, name, "GET", "slow-headers", nil, nil)
	wantVaultError(t, err, 0, "no response headers")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2500*time.Millisecond {
		t.Fatalf("header timeout: %v after %s", err, time.Since(start))
	}

	// Headers and a first chunk, then silence: the read fails, the chunk was delivered.
	resp, err := quick.Proxy(ctx, name, "GET", "stall", nil, nil)
	noErr(t, err)
	defer resp.Body.Close()
	reader := bufio.NewReader(resp.Body)
	line, err := reader.ReadString('\n')
	noErr(t, err)
	if line != "first chunk\n" {
		t.Fatalf("first chunk %q", line)
	}
	_, err = reader.ReadString('\n')
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an idle stream should fail with DeadlineExceeded, got %v", err)
	}

	// Time spent by the caller between reads does not count: only waits for data do.
	resp, err = quick.Proxy(ctx, name, "GET", "echo/pause", nil, nil)
	noErr(t, err)
	time.Sleep(time.Second)
	if body := readAll(t, resp); !strings.Contains(string(body), "/api/echo/pause") {
		t.Fatalf("body after a pause: %q", body)
	}

	// The caller's context still stops a stream.
	cctx, cancel := context.WithCancel(ctx)
	resp, err = e.admin.Proxy(cctx, name, "GET", "stall", nil, nil)
	noErr(t, err)
	cancel()
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled context should end the stream, got %v", err)
	}
}
