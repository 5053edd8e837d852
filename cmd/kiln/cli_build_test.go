package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kilnai/kiln/examples"
)

// TestBuildOutputPath checks where kiln build writes: the default name in
// the current folder, a bad -o refused before the build with a message
// naming the folder, no temporary file left behind, and the plan's mode
// 0644 less the umask.
func TestBuildOutputPath(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, examples.TinyCNNModel, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	named := write("models/tiny.onnx")
	inFolder := write("models/resnet/model.onnx")
	versioned := write("repo/yolo/1/model.onnx")
	broken := filepath.Join(dir, "models/broken.onnx")
	if err := os.WriteFile(broken, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	defaults := []struct{ model, want string }{
		{named, "tiny.plan"},
		{inFolder, "resnet.plan"},
		{versioned, "yolo.plan"},
	}
	for _, tt := range defaults {
		if got := defaultPlanName(tt.model); got != tt.want {
			t.Errorf("defaultPlanName(%s) = %q, want %q", tt.model, got, tt.want)
		}
	}
	if got := defaultPlanName("model.onnx"); got != "work.plan" {
		t.Errorf("defaultPlanName(model.onnx) in folder work = %q, want work.plan", got)
	}

	// the default output: in the current folder, 0644 under umask 022
	out := captureErr(t, func() {
		if code := buildCmd([]string{inFolder, "--no-timing"}); code != exitOK {
			t.Fatalf("kiln build without -o exited %d", code)
		}
	})
	st, err := os.Stat(filepath.Join(work, "resnet.plan"))
	if err != nil {
		t.Fatalf("no plan in the current folder: %v (%s)", err, out)
	}
	if m := st.Mode().Perm(); m != 0o644 {
		t.Errorf("plan mode %v under umask 022, want -rw-r--r--", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "models/resnet/model.plan")); err == nil {
		t.Errorf("kiln build wrote next to the model")
	}
	syscall.Umask(0o077)
	if code := buildCmd([]string{named, "-o", "private.plan", "--no-timing"}); code != exitOK {
		t.Fatalf("kiln build -o private.plan exited %d", code)
	}
	if st, err := os.Stat("private.plan"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("plan under umask 077: %v %v, want -rw-------", st.Mode(), err)
	}
	syscall.Umask(0o022)

	bad := []struct {
		name, model, o string
		want           []string
		extra          []string // flags instead of --no-timing
	}{
		// the model is missing too: the output is checked first
		{"missing folder", filepath.Join(dir, "none.onnx"), filepath.Join(dir, "no/such/dir/x.plan"), []string{"the folder " + filepath.Join(dir, "no/such/dir") + " does not exist"}, nil},
		{"folder is a file", named, filepath.Join(named, "x.plan"), []string{"is not a folder"}, nil},
		{"output is a folder", named, work, []string{"is a folder"}, nil},
		{"overwrite the model", named, named, []string{"would overwrite the model"}, nil},
		{"broken model", broken, "broken.plan", []string{"broken.onnx"}, nil},
		{"timing cache in a missing folder", filepath.Join(dir, "none.onnx"), "t.plan", []string{"--timing-cache", "the folder " + filepath.Join(dir, "gone") + " does not exist"},
			[]string{"--timing-cache", filepath.Join(dir, "gone", "t.json")}},
		{"calibration cache in a missing folder", filepath.Join(dir, "none.onnx"), "t.plan", []string{"--calib-cache", "the folder " + filepath.Join(dir, "gone") + " does not exist"},
			[]string{"--int8", "--calib-cache", filepath.Join(dir, "gone", "c.calib")}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			args := append([]string{tt.model, "-o", tt.o}, tt.extra...)
			if len(tt.extra) == 0 {
				args = append(args, "--no-timing")
			}
			out := captureErr(t, func() { code = buildCmd(args) })
			if code != exitError {
				t.Fatalf("exit %d, want %d", code, exitError)
			}
			for _, s := range tt.want {
				if !strings.Contains(out, s) {
					t.Errorf("message %q lacks %q", out, s)
				}
			}
			if strings.Contains(out, ".tmp") {
				t.Errorf("message names a temporary file: %q", out)
			}
		})
	}
	// nothing but the plans is left in the output folder
	ents, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "private.plan resnet.plan" {
		t.Errorf("files in the output folder: %s", got)
	}
}
