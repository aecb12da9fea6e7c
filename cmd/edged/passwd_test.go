package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswdPrintsAHashThatChecks(t *testing.T) {
	old := stdinFile
	t.Cleanup(func() { stdinFile = old })
	stdinFile = strings.NewReader("s3cret-pw\n")
	var out, errb bytes.Buffer
	if rc := run([]string{"passwd", "-cost", "4"}, &out, &errb); rc != exitOK {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret-pw")); err != nil {
		t.Fatalf("hash %q does not check: %v", hash, err)
	}
	if strings.Contains(out.String()+errb.String(), "s3cret-pw") {
		t.Fatal("the password was printed")
	}
	if c, _ := bcrypt.Cost([]byte(hash)); c != 4 {
		t.Fatalf("cost %d", c)
	}

	stdinFile = strings.NewReader("\n")
	if rc := run([]string{"passwd"}, &out, &errb); rc != exitFailure || !strings.Contains(errb.String(), "empty password") {
		t.Fatalf("empty password: rc %d, %s", rc, errb.String())
	}
	errb.Reset()
	if rc := run([]string{"passwd", "pw-on-the-command-line"}, &out, &errb); rc != exitUsage || !strings.Contains(errb.String(), "never from the command line") {
		t.Fatalf("password argument: rc %d, %s", rc, errb.String())
	}
}
