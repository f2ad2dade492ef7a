package vaultproxy_test

// SSH and TCP-session calls. SSH calls are checked up to the vault's own errors (no SSH server here);
// the redis session runs against a real redis-server that tests/integration/test_go_sdk.py starts.

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-proxy/vault-proxy/sdk/go/vaultproxy"
)

func TestSSHCallsReportVaultErrors(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	bearer, _ := addBearer(t, e, "not-ssh")
	unknown := uniqueName("no-such-host")

	_, err := e.admin.SSHExec(ctx, unknown, "uptime", 0)
	wantVaultError(t, err, http.StatusNotFound, "not found")
	_, err = e.admin.SSHExec(ctx, bearer, "uptime", 5*time.Second)
	wantVaultError(t, err, http.StatusBadRequest, "not ssh_key")
	_, err = e.admin.SSHUpload(ctx, bearer, strings.NewReader("data"), "/tmp/x", 0o600)
	wantVaultError(t, err, http.StatusBadRequest, "not ssh_key")
	_, err = e.admin.SSHUpload(ctx, unknown, strings.NewReader("data"), "/tmp/x", 0)
	wantVaultError(t, err, http.StatusNotFound)
	_, err = e.admin.SSHDownload(ctx, bearer, "/tmp/x")
	wantVaultError(t, err, http.StatusBadRequest, "not ssh_key")
	_, err = e.admin.SSHDownload(ctx, unknown, "/tmp/x")
	wantVaultError(t, err, http.StatusNotFound)

	// A real ssh_key service whose host does not answer: the vault's own 502, after the
	// request was fully understood (command, key file and timeout accepted).
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	noErr(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	noErr(t, err)
	keyFile := uniqueName("id_ed25519")
	_, err = e.admin.UploadFile(ctx, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "")
	noErr(t, err)
	port, err := freePort()
	noErr(t, err)
	host := uniqueName("ssh")
	info, err := e.admin.AddService(ctx, vaultproxy.Service{Name: host, Auth: vaultproxy.Auth{
		"type": "ssh_key", "ssh_host": "127.0.0.1", "ssh_port": port, "ssh_user": "deploy", "ssh_key_file_ref": keyFile,
		"ssh_allowed_commands": []string{"uptime"},
	}})
	noErr(t, err)
	if info.AuthType != "ssh_key" || info.SSHPort != port || info.SSHUser != "deploy" || info.SSHKeyFileRef != keyFile {
		t.Fatalf("ssh ServiceInfo: %+v", info)
	}
	_, err = e.admin.SSHExec(ctx, host, "uptime", 5*time.Second)
	wantVaultError(t, err, http.StatusBadGateway, "ssh connection failed")
	_, err = e.admin.SSHExec(ctx, host, "rm -rf /", 0)
	wantVaultError(t, err, http.StatusForbidden, "not in allowed list")
	_, err = e.admin.SSHExec(ctx, host, "uptime", 301*time.Second)
	wantVaultError(t, err, http.StatusBadRequest, "timeout")

	// The key file is in use: deleting it is refused with 409 naming the service.
	err = e.admin.DeleteFile(ctx, keyFile)
	wantVaultError(t, err, http.StatusConflict, host)
	noErr(t, e.admin.RemoveService(ctx, host))
	noErr(t, e.admin.DeleteFile(ctx, keyFile))
}

func TestRedisSession(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	// A real redis-server, started by tests/integration/test_go_sdk.py (requirepass on).
	port, err := strconv.Atoi(os.Getenv("VAULT_TEST_REDIS_PORT"))
	password := os.Getenv("VAULT_TEST_REDIS_PASSWORD")
	if err != nil || password == "" {
		t.Skip("VAULT_TEST_REDIS_PORT / VAULT_TEST_REDIS_PASSWORD not set (run through tests/integration/test_go_sdk.py)")
	}
	name := uniqueName("cache")
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: name, Auth: vaultproxy.Auth{
		"type": "redis", "redis_host": "127.0.0.1", "redis_port": port, "redis_password": password, "redis_db": 3,
	}})
	noErr(t, err)
	defer e.admin.RemoveService(ctx, name)

	before := time.Now()
	sess, err := e.admin.Session(ctx, "redis", name, 5*time.Second)
	noErr(t, err)
	if !strings.HasPrefix(sess.Addr, "127.0.0.1:") {
		t.Fatalf("session address %q", sess.Addr)
	}
	if sess.ExpiresAt.Before(before.Add(3*time.Second)) || sess.ExpiresAt.After(before.Add(10*time.Second)) {
		t.Fatalf("expires_at %s, want about 5 s from now", sess.ExpiresAt)
	}

	conn, err := net.DialTimeout("tcp", sess.Addr, 5*time.Second)
	noErr(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	reader := bufio.NewReader(conn)
	// The client logs in locally with the session's one-time secret; the vault already logged in upstream.
	if len(sess.ClientSecret) < 16 {
		t.Fatalf("client secret %q", sess.ClientSecret)
	}
	_, err = fmt.Fprintf(conn, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(sess.ClientSecret), sess.ClientSecret)
	noErr(t, err)
	if line, _ := reader.ReadString('\n'); line != "+OK\r\n" {
		t.Fatalf("local AUTH answer %q", line)
	}
	_, err = io.WriteString(conn, "*1\r\n$4\r\nPING\r\n")
	noErr(t, err)
	if line, _ := reader.ReadString('\n'); line != "+PONG\r\n" {
		t.Fatalf("PING through the session: %q", line)
	}
	// The stored SELECT happened upstream: the connection is in db 3.
	_, err = io.WriteString(conn, "*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n")
	noErr(t, err)
	header, err := reader.ReadString('\n')
	noErr(t, err)
	size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(header, "$")))
	noErr(t, err)
	info := make([]byte, size+2)
	_, err = io.ReadFull(reader, info)
	noErr(t, err)
	if !strings.Contains(string(info), " db=3 ") {
		t.Fatalf("CLIENT INFO through the session: %q", info)
	}
}

func TestSessionErrors(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)
	_, err := e.admin.Session(ctx, "redis", uniqueName("nope"), 0)
	wantVaultError(t, err, http.StatusNotFound, "not found")
	bearer, _ := addBearer(t, e, "not-redis")
	_, err = e.admin.Session(ctx, "redis", bearer, 0)
	wantVaultError(t, err, http.StatusBadRequest, "not redis")
	_, err = e.admin.Session(ctx, "gopher", bearer, 0)
	wantVaultError(t, err, http.StatusNotFound)

	port, err := freePort()
	noErr(t, err)
	dead := uniqueName("dead-redis")
	_, err = e.admin.AddService(ctx, vaultproxy.Service{Name: dead, Auth: vaultproxy.Auth{
		"type": "redis", "redis_host": "127.0.0.1", "redis_port": port,
	}})
	noErr(t, err)
	defer e.admin.RemoveService(ctx, dead)
	_, err = e.admin.Session(ctx, "redis", dead, 301*time.Second)
	wantVaultError(t, err, http.StatusBadRequest, "timeout")
	_, err = e.admin.Session(ctx, "redis", dead, 0)
	wantVaultError(t, err, http.StatusBadGateway, "redis connect failed")
}
