package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestReadmeTestNames checks that the tests README.md names exist. Every
// `go test` command of README.md (its "$ " lines and the commands quoted in
// its text) names tests and benchmarks of its package: each alternative of the first level of a -run or
// -bench pattern must match a Test or Benchmark function of the package's
// _test.go files. A test that moved to another package leaves a command
// that runs nothing and still passes ("no tests to run"), which TestReadme
// cannot see: it skips the measurement commands, and a go test command it
// does run passes when no test matches. And every TestX or BenchmarkY the
// text names is declared in some _test.go file of the repository.
func TestReadmeTestNames(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, c := range readmeGoTests(string(b)) {
		for _, p := range c.checks {
			names, err := testFuncs(filepath.Join(repo, p.pkg))
			if err != nil {
				t.Errorf("README.md:%d: %q: package %s: %v", c.line, c.text, p.pkg, err)
				continue
			}
			for _, alt := range patternAlternatives(p.pattern) {
				re, err := regexp.Compile(alt)
				if err != nil {
					t.Errorf("README.md:%d: %q: %s %q: %v", c.line, c.text, p.flag, alt, err)
					continue
				}
				if !matchesAny(re, names, p.prefix) {
					t.Errorf("README.md:%d: %q: %s %q matches no %s function of %s", c.line, c.text, p.flag, alt, p.prefix, p.pkg)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no go test command with -run or -bench found in README.md")
	}
	t.Logf("%d test name patterns of README.md checked", checked)

	// Every test or benchmark the text names (TestX, BenchmarkY) exists
	// somewhere in the repository.
	all := map[string]bool{}
	err = filepath.WalkDir(repo, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		names, err := funcsOf(path)
		for _, n := range names {
			all[n] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`\b(?:Test|Benchmark)[A-Z]\w*`).FindAllString(string(b), -1)
	for _, n := range named {
		if !all[n] {
			t.Errorf("README.md names %s, which no _test.go file of the repository declares", n)
		}
	}
	if len(named) == 0 {
		t.Error("README.md names no test")
	}
}

// readmeGoTest is one go test command of the README with what it asks to run.
type readmeGoTest struct {
	line   int
	text   string
	checks []nameCheck
}

// nameCheck is one -run or -bench pattern of a go test command and the
// package (a folder relative to the repository's root) it applies to.
type nameCheck struct {
	flag, pattern, pkg, prefix string
}

var inlineGoTest = regexp.MustCompile("`((?:[A-Z_]+=\\S+ )*go test [^`]*)`")

// readmeGoTests finds the go test commands of a README: the "$ " lines of
// its example blocks, and the commands quoted (in backquotes) in its text,
// where a table's escaped \| is a |. A compiled test binary run after
// `go test -c -o BIN PKG` (its -test.run and -test.bench) counts as PKG.
func readmeGoTests(text string) []readmeGoTest {
	var out []readmeGoTest
	cmds, _ := parseReadme(text)
	bins := map[string]string{}
	for _, c := range cmds {
		words, _, err := shellWords(c.text)
		if err != nil {
			continue
		}
		if g := goTestChecks(words, bins); len(g) > 0 {
			out = append(out, readmeGoTest{line: c.line, text: c.text, checks: g})
		}
	}
	for _, m := range inlineGoTest.FindAllStringSubmatchIndex(text, -1) {
		s := strings.Join(strings.Fields(strings.ReplaceAll(text[m[2]:m[3]], `\|`, "|")), " ")
		words, _, err := shellWords(s)
		if err != nil {
			continue
		}
		if g := goTestChecks(words, bins); len(g) > 0 {
			out = append(out, readmeGoTest{line: 1 + strings.Count(text[:m[0]], "\n"), text: s, checks: g})
		}
	}
	return out
}

// goTestChecks reads one command's words (leading VAR=value words
// allowed): a go test command's packages and its -run / -bench patterns,
// or a test binary's -test.run / -test.bench with the package bins says it
// was built from. A go test -c records its binary in bins.
func goTestChecks(words []string, bins map[string]string) []nameCheck {
	for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
		words = words[1:]
	}
	var pkgs []string
	flags := map[string]string{}
	binary, out := "", ""
	switch {
	case len(words) >= 2 && words[0] == "go" && words[1] == "test":
		for i := 2; i < len(words); i++ {
			w := words[i]
			switch {
			case w == "-run" || w == "-bench" || w == "-o" || w == "-tags" || w == "-cpu" || w == "-benchtime" || w == "-count" || w == "-timeout":
				if i+1 < len(words) {
					flags[w] = words[i+1]
					i++
				}
			case strings.HasPrefix(w, "-run=") || strings.HasPrefix(w, "-bench="):
				k, v, _ := strings.Cut(w, "=")
				flags[k] = v
			case w == "." || strings.HasPrefix(w, "./"):
				pkgs = append(pkgs, strings.TrimSuffix(w, "/"))
			}
		}
		if _, ok := flags["-o"]; ok {
			out = flags["-o"]
		}
	case len(words) >= 1 && bins[words[0]] != "":
		binary = words[0]
		pkgs = []string{bins[binary]}
		for i := 1; i+1 < len(words); i++ {
			switch words[i] {
			case "-test.run":
				flags["-run"] = words[i+1]
			case "-test.bench":
				flags["-bench"] = words[i+1]
			}
		}
	default:
		return nil
	}
	if out != "" && len(pkgs) == 1 {
		bins["./"+strings.TrimPrefix(out, "./")] = pkgs[0]
	}
	var checks []nameCheck
	for _, p := range pkgs {
		if r, ok := flags["-run"]; ok && r != "^$" {
			checks = append(checks, nameCheck{"-run", firstLevel(r), p, "Test"})
		}
		if r, ok := flags["-bench"]; ok && r != "." {
			checks = append(checks, nameCheck{"-bench", firstLevel(r), p, "Benchmark"})
		}
	}
	return checks
}

// firstLevel is the part of a -run/-bench pattern that top-level test
// names match: go test splits a pattern at slashes outside brackets and
// parentheses, one part per level of subtests.
func firstLevel(p string) string {
	depth := 0
	for i, c := range p {
		switch c {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '/':
			if depth == 0 {
				return p[:i]
			}
		}
	}
	return p
}

// patternAlternatives splits a pattern at its top-level |, so that each
// alternative is checked on its own; a pattern with parentheses or
// brackets is checked whole.
func patternAlternatives(p string) []string {
	if strings.ContainsAny(p, "()[]") {
		return []string{p}
	}
	return strings.Split(p, "|")
}

// testFuncs lists the Test and Benchmark functions of a package folder's
// _test.go files, whatever their build tags.
func testFuncs(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no _test.go files in %s", dir)
	}
	var names []string
	for _, f := range files {
		n, err := funcsOf(f)
		if err != nil {
			return nil, err
		}
		names = append(names, n...)
	}
	sort.Strings(names)
	return names, nil
}

var testDecl = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark)\w*)\(`)

// funcsOf lists the Test and Benchmark functions one _test.go file declares.
func funcsOf(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range testDecl.FindAllStringSubmatch(string(b), -1) {
		names = append(names, m[1])
	}
	return names, nil
}

func matchesAny(re *regexp.Regexp, names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) && re.MatchString(n) {
			return true
		}
	}
	return false
}

// TestReadmeGoTestParsing checks goTestChecks and the helpers on the
// forms the README uses.
func TestReadmeGoTestParsing(t *testing.T) {
	bins := map[string]string{}
	cases := []struct {
		cmd  string
		want []nameCheck
	}{
		{"go test ./ops -run 'Attrs|Traits|TypedOps'", []nameCheck{{"-run", "Attrs|Traits|TypedOps", "./ops", "Test"}}},
		{"KILN_POOL_BENCH=1 KILN_POOL_THREADS=1 go test ./device/cpu/kernels -run PoolCPUTime -v", []nameCheck{{"-run", "PoolCPUTime", "./device/cpu/kernels", "Test"}}},
		{"go test ./ops/nn -run '^$' -bench 'DirectOrder/squeezenet1_1/^00_' -cpu 1", []nameCheck{{"-bench", "DirectOrder", "./ops/nn", "Benchmark"}}},
		{"go test -run '^$' -bench 'Decode|RejectFullQueue' -benchmem ./serve/httpapi/", []nameCheck{{"-bench", "Decode|RejectFullQueue", "./serve/httpapi", "Benchmark"}}},
		{"go test -c -o cuda.test ./device/cuda", nil},
		{"KILN_INT8_BLOCK_BENCH=1 ./cuda.test -test.run TestInt8BlockBenchOnGPU -test.v", []nameCheck{{"-run", "TestInt8BlockBenchOnGPU", "./device/cuda", "Test"}}},
		{"go test ./bench/elastic", nil},
		{"kiln run x.plan", nil},
	}
	for _, c := range cases {
		words, _, err := shellWords(c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		got := goTestChecks(words, bins)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("goTestChecks(%q) = %v, want %v", c.cmd, got, c.want)
		}
	}
	if got := firstLevel("A/(b/c)/d"); got != "A" {
		t.Errorf("firstLevel = %q", got)
	}
	if got := firstLevel("(A/B)|C"); got != "(A/B)|C" {
		t.Errorf("firstLevel = %q", got)
	}
	if got := patternAlternatives("A|B"); len(got) != 2 {
		t.Errorf("patternAlternatives = %q", got)
	}
	gt := readmeGoTests("text `go test ./x -run\nTestA` and\n\n    $ go test ./y -run 'B\\|C'\n")
	if len(gt) != 2 || gt[1].line != 1 || gt[1].checks[0].pattern != "TestA" || gt[0].checks[0].pattern != `B\|C` {
		t.Errorf("readmeGoTests = %+v", gt)
	}
	re := regexp.MustCompile("Foo")
	if matchesAny(re, []string{"BenchmarkFoo"}, "Test") || !matchesAny(re, []string{"TestFoo"}, "Test") {
		t.Error("matchesAny ignores the prefix")
	}
}
