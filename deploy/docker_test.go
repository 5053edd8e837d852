package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// TestDockerfiles checks what the images and the chart must agree on (the
// images are not built here: no container engine): the user the pods run
// as, the ports, kiln as the entrypoint so the chart's args are
// subcommands, and the CUDA + cuDNN base of the GPU image.
func TestDockerfiles(t *testing.T) {
	out, err := render()
	if err != nil {
		t.Fatal(err)
	}
	dep := find[appsv1.Deployment](t, decode(t, out), "Deployment", serverName)
	user := dep.Spec.Template.Spec.SecurityContext.RunAsUser
	for _, tc := range []struct {
		file, base string
	}{
		{"docker/Dockerfile", "gcr.io/distroless/base-debian12:nonroot"},
		{"docker/Dockerfile.gpu", "nvidia/cuda:${CUDA_TAG}"},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(s, -1)
		if len(froms) == 0 || froms[len(froms)-1][1] != tc.base {
			t.Errorf("%s: final stage %v, want %s", tc.file, froms, tc.base)
		}
		for _, want := range []string{
			"USER 65532:65532",
			"EXPOSE 8000 8001 8002",
			`ENTRYPOINT ["/usr/local/bin/kiln"]`,
			"go build -trimpath",
			"./cmd/kiln",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s lacks %q", tc.file, want)
			}
		}
		if user == nil || *user != 65532 {
			t.Errorf("the chart runs as %v, the images as 65532", user)
		}
		if tc.file == "docker/Dockerfile.gpu" && !strings.Contains(s, "cudnn-runtime") {
			t.Errorf("%s: the base is not NVIDIA's CUDA runtime + cuDNN image", tc.file)
		}
	}
}
