package vaultproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// VaultErrorHeader is the response header the vault sets on every answer it generates itself.
// On proxied calls it tells a vault error (bad token, unknown service, SSRF refusal, upstream
// unreachable…) from an answer of the upstream, which never carries it.
const VaultErrorHeader = "X-Vault-Error"

// ErrInvalidAddress is wrapped by the *VaultError returned for a malformed vault address.
var ErrInvalidAddress = errors.New("invalid vault address")

// ErrInsecureAddress is wrapped by the *VaultError returned for plain http:// to a non-loopback
// host when WithAllowInsecure was not given.
var ErrInsecureAddress = errors.New("insecure vault address")

// VaultError is an error answered by the vault itself, not by an upstream service.
//
// StatusCode is the HTTP status (401, 403, 404, …), or 0 when no HTTP answer was received
// (server unreachable, timeout, invalid address); Message is the vault's own message, such as
// `service "x" not found`. Err, when set, is the underlying cause (a network error,
// context.DeadlineExceeded, ErrInvalidAddress, …) and is returned by Unwrap, so errors.Is works
// on it. Use errors.As to get at a *VaultError:
//
//	var verr *vaultproxy.VaultError
//	if errors.As(err, &verr) && verr.StatusCode == http.StatusNotFound { … }
type VaultError struct {
	// StatusCode is the HTTP status of the vault's answer, 0 when there was none.
	StatusCode int
	// Message is the "error" field of the vault's JSON answer (or a description of the failure).
	Message string
	// Err is the underlying cause when no HTTP answer was received; nil otherwise.
	Err error
}

// Error returns the vault's message, prefixed with the HTTP status when there is one.
func (e *VaultError) Error() string {
	if e.StatusCode == 0 {
		return "vault-proxy: " + e.Message
	}
	return fmt.Sprintf("vault-proxy: %d %s", e.StatusCode, e.Message)
}

// Unwrap returns the underlying cause, if any.
func (e *VaultError) Unwrap() error { return e.Err }

// IsStatus reports whether err is (or wraps) a *VaultError with the given HTTP status code.
func IsStatus(err error, statusCode int) bool {
	var verr *VaultError
	return errors.As(err, &verr) && verr.StatusCode == statusCode
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 20

// errorFromResponse reads (and closes) resp's body and turns it into a *VaultError.
func errorFromResponse(resp *http.Response) *VaultError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return &VaultError{StatusCode: resp.StatusCode, Message: errorMessage(resp, body)}
}

// errorMessage is the "error" field of a vault error body, or a short fallback.
func errorMessage(resp *http.Response, body []byte) string {
	var parsed struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(body, &parsed) == nil && parsed.Error != nil {
		return *parsed.Error
	}
	text := strings.TrimSpace(string(body))
	if text != "" && len(text) <= 200 && !strings.Contains(text, "\n") {
		return text
	}
	return strings.TrimSpace(fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
}

// isVaultError reports whether a proxied answer was produced by the vault, not the upstream.
func isVaultError(resp *http.Response) bool {
	return strings.TrimSpace(resp.Header.Get(VaultErrorHeader)) == "1"
}
