package main

import (
	"reflect"
	"strings"
	"testing"
)

// TestReadmeParsing checks the pieces TestReadme reads the README with:
// shell words, the "...N values..." abbreviation, and the command lines of
// example blocks (continuations joined, "$ "-less commands refused).
func TestReadmeParsing(t *testing.T) {
	words := []struct {
		in      string
		want    []string
		comment string
		err     bool
	}{
		{"go run ./cmd/kiln build a.onnx -o a.plan", []string{"go", "run", "./cmd/kiln", "build", "a.onnx", "-o", "a.plan"}, "", false},
		{"curl -H 'Authorization: Bearer x' localhost:8000/v2  # answers 401", []string{"curl", "-H", "Authorization: Bearer x", "localhost:8000/v2"}, "answers 401", false},
		{`curl -d "{\"a\": 1}" url`, []string{"curl", "-d", `{"a": 1}`, "url"}, "", false},
		{"a#b c", []string{"a#b", "c"}, "", false},
		{`x\ y z`, []string{"x y", "z"}, "", false},
		{"kiln serve 'open", nil, "", true},
		{`kiln "open`, nil, "", true},
	}
	for _, tt := range words {
		got, comment, err := shellWords(tt.in)
		if (err != nil) != tt.err || (!tt.err && (!reflect.DeepEqual(got, tt.want) || comment != tt.comment)) {
			t.Errorf("shellWords(%q) = %q, %q, %v; want %q, %q, error %v", tt.in, got, comment, err, tt.want, tt.comment, tt.err)
		}
	}
	if got := expandValues(`"data":[0.5, ...4 values...]`); got != `"data":[0.5,0.5,0.5,0.5]` {
		t.Errorf("expandValues: %s", got)
	}
	if got := expandValues(`"data":[1,2]`); got != `"data":[1,2]` {
		t.Errorf("expandValues changed plain data: %s", got)
	}

	readme := strings.Join([]string{
		"# title",
		"",
		"    $ go run ./cmd/kiln build a.onnx \\",
		"        -o a.plan",
		"    $ curl localhost:8000/v2/health/ready",
		"",
		"```go",
		"    $ not a command: inside a fenced block",
		"```",
		"text $ not indented",
	}, "\n")
	got, bad := parseReadme(readme)
	want := []readmeCommand{{3, "go run ./cmd/kiln build a.onnx  -o a.plan"}, {5, "curl localhost:8000/v2/health/ready"}}
	if !reflect.DeepEqual(got, want) || len(bad) != 0 {
		t.Errorf("parseReadme = %+v, %q; want %+v and no complaint", got, bad, want)
	}
	// a command written without "$ " is an error of the README
	for _, l := range []string{"    go run ./cmd/kiln serve", "    kiln build x.onnx", "    curl localhost:8000/"} {
		if got, bad := parseReadme("text\n\n" + l + "\n"); len(got) != 0 || len(bad) != 1 || !strings.HasPrefix(bad[0], "3: ") {
			t.Errorf("parseReadme(%q) = %+v, %q; want one complaint about line 3", l, got, bad)
		}
	}
}
