package residency

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// exeRSS sums the resident size of the mappings of the test's own
// executable (kB, from /proc/self/smaps).
func exeRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[1]) == 4 {
			_, _, in = mapping(line, exe) // a mapping's header
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(v, "kB")))
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			total += n
		}
	}
	return total
}

// TestTrimExecutableShrinksResidentCode: after TrimExecutable the test
// binary's own mappings hold fewer resident pages, and the program keeps
// running (the pages come back from the file as they are used).
func TestTrimExecutableShrinksResidentCode(t *testing.T) {
	before := exeRSS(t)
	if before == 0 {
		t.Fatal("no resident pages of the executable found in /proc/self/smaps")
	}
	if n := TrimExecutable(); n == 0 {
		t.Fatal("TrimExecutable advised nothing: no mapping of the executable found, or MADV_PAGEOUT refused")
	}
	after := exeRSS(t)
	t.Logf("resident pages of the executable: %d kB before, %d kB after", before, after)
	if after >= before {
		t.Fatalf("resident %d kB after trimming, %d kB before", after, before)
	}
}

func TestMappingParsesMapsLines(t *testing.T) {
	const exe = "/usr/bin/edged"
	for _, tc := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-00c00000 r-xp 00000000 fd:01 1234                               /usr/bin/edged", 0x400000, 0xc00000, true},
		{"00400000-00c00000 r-xp 00000000 fd:01 1234                               /usr/bin/edged-old", 0, 0, false},
		{"7f00-7e00 r--p 00000000 fd:01 1234 /usr/bin/edged", 0, 0, false},
		{"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ", 0, 0, false},
		{"zz-7f00 r--p 00000000 fd:01 1234 /usr/bin/edged", 0, 0, false},
	} {
		s, e, ok := mapping(tc.line, exe)
		if ok != tc.ok || s != tc.start || e != tc.end {
			t.Errorf("mapping(%q) = %x, %x, %v; want %x, %x, %v", tc.line, s, e, ok, tc.start, tc.end, tc.ok)
		}
	}
}
