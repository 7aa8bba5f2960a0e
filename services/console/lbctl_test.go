package console

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestHashFromReadsOneLine(t *testing.T) {
	h, err := HashFrom(strings.NewReader("s3cret\r\nignored\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "s3cret") || CheckPassword(h, "s3cret\r") {
		t.Fatalf("hash %q does not check the line without its line ending", h)
	}
	if _, err := HashFrom(strings.NewReader("")); err == nil {
		t.Fatal("no input must be an error")
	}
}

func TestRunCommandRunsOneLineAndNeedsOne(t *testing.T) {
	var out strings.Builder
	if err := RunCommand(context.Background(), t.TempDir(), []string{"help"}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "show vs") {
		t.Fatalf("help printed %q", out.String())
	}
	if err := RunCommand(context.Background(), t.TempDir(), nil, strings.NewReader(""), &out); !errors.Is(err, ErrUsage) {
		t.Fatalf("no command: %v, want ErrUsage", err)
	}
	if err := RunCommand(context.Background(), t.TempDir(), []string{"exit"}, strings.NewReader(""), &out); err != nil {
		t.Fatalf("exit is not an error: %v", err)
	}
	err := RunCommand(context.Background(), t.TempDir(), []string{"show", "vs"}, strings.NewReader(""), &out)
	if err == nil || !strings.Contains(err.Error(), "lbd") {
		t.Fatalf("show vs without lbd: %v, want an error naming lbd", err)
	}
}
