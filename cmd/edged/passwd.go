package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

func init() {
	register(command{"passwd", "[-cost N]  print a password hash for a [[broker.user]] (reads the password from the terminal or stdin)", cmdPasswd})
}

// stdinFile is where passwd reads from (a variable for tests).
var stdinFile io.Reader = os.Stdin

// cmdPasswd prints the bcrypt hash of a password for password_hash in a
// [[broker.user]]. On a terminal it asks twice without echo; otherwise it
// reads the first line of stdin. The password itself is never printed.
func cmdPasswd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("passwd", stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost, %d to %d: each step doubles the time one login check takes (the broker limits how much CPU checks may use)", bcrypt.MinCost, 14))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "edged passwd: the password is read from the terminal or stdin, never from the command line (it would show in the process list and shell history)")
		return exitUsage
	}
	if *cost < bcrypt.MinCost || *cost > 14 {
		fmt.Fprintf(stderr, "edged passwd: -cost %d is out of range; use %d to 14 (default %d)\n", *cost, bcrypt.MinCost, bcrypt.DefaultCost)
		return exitUsage
	}
	pw, err := readPassword(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "edged passwd: %v\n", err)
		return exitFailure
	}
	hash, err := bcrypt.GenerateFromPassword(pw, *cost)
	if err != nil {
		if errors.Is(err, bcrypt.ErrPasswordTooLong) {
			err = errors.New("the password is longer than 72 bytes, which bcrypt cannot use; choose a shorter one")
		}
		fmt.Fprintf(stderr, "edged passwd: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, string(hash))
	return exitOK
}

func readPassword(stderr io.Writer) ([]byte, error) {
	if f, ok := stdinFile.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, err
		}
		if string(a) != string(b) {
			return nil, errors.New("the two passwords differ")
		}
		return checkPassword(a)
	}
	line, err := bufio.NewReader(stdinFile).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return checkPassword([]byte(strings.TrimRight(line, "\r\n")))
}

func checkPassword(pw []byte) ([]byte, error) {
	if len(pw) == 0 {
		return nil, errors.New("empty password; type one, or pipe it in: printf '%s\\n' \"$PASSWORD\" | edged passwd")
	}
	return pw, nil
}
