package deploy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// kubeAPIServer finds the kube-apiserver binary: $KUBE_APISERVER, then
// PATH, then $(go env GOPATH)/bin, where scripts/deps-kube.sh puts it.
func kubeAPIServer() string {
	if p := os.Getenv("KUBE_APISERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return ""
		}
		return p
	}
	if p, err := exec.LookPath("kube-apiserver"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath != "" {
		p := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "kube-apiserver")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// crds stand for the custom resources the chart writes: the Prometheus
// Operator's ServiceMonitor and PrometheusRule and KEDA's ScaledObject,
// under their real group, version, kind and plural, with a schema that
// keeps every field. The API server checks their apiVersion, kind and
// metadata; their specs are checked by strict decoding into the operator's
// Go types (and scaledObject) in TestChartRenders.
var crds = []struct{ group, version, kind, plural string }{
	{"monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"},
	{"monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules"},
	{"keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"},
}

func crdManifest(group, version, kind, plural string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group,
			"scope": "Namespaced",
			"names": map[string]any{"kind": kind, "listKind": kind + "List", "plural": plural, "singular": strings.ToLower(kind)},
			"versions": []any{map[string]any{
				"name": version, "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object",
					"properties": map[string]any{
						"spec": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
					},
				}},
			}},
		},
	}}
}

// startKube runs etcd and kube-apiserver on loopback ports of a temporary
// folder and returns a client configuration for them (a static token of
// system:masters).
func startKube(t *testing.T) *rest.Config {
	t.Helper()
	apiserver := kubeAPIServer()
	if apiserver == "" {
		t.Skip("kube-apiserver not found ($KUBE_APISERVER, PATH or $(go env GOPATH)/bin): bash scripts/deps-kube.sh builds it from k8s.io/kubernetes")
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not found: bash scripts/deps-kube.sh installs Debian's etcd-server")
	}
	dir := t.TempDir()
	ports := map[string]int{"etcd": freePort(t), "peer": freePort(t), "api": freePort(t)}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports["etcd"])
	run := func(name string, bin string, args ...string) <-chan struct{} {
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log (last 3000 bytes):\n%s", name, tail(b, 3000))
			}
		})
		return done
	}
	etcdDone := run("etcd", etcd, "--name=kiln-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ports["peer"]),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ports["peer"]),
		fmt.Sprintf("--initial-cluster=kiln-test=http://127.0.0.1:%d", ports["peer"]))
	if err := poll(30*time.Second, etcdDone, func() bool {
		resp, err := http.Get(etcdURL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		t.Fatalf("etcd not healthy: %v", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "kiln-test-token"
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// the endpoint reconciler would write the loopback address into the
	// kubernetes Service's endpoints, which validation refuses
	apiDone := run("kube-apiserver", apiserver, "--etcd-servers="+etcdURL, "--endpoint-reconciler-type=none",
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports["api"]),
		"--cert-dir="+filepath.Join(dir, "certs"), "--token-auth-file="+tokens, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+keyFile,
		"--service-account-signing-key-file="+keyFile, "--service-cluster-ip-range=10.0.0.0/24")
	cfg := &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", ports["api"]), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	if err := poll(120*time.Second, apiDone, func() bool {
		b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		last = string(b)
		if err != nil {
			last = err.Error()
		}
		return err == nil
	}); err != nil {
		t.Fatalf("kube-apiserver not ready: %v: %s", err, last)
	}
	return cfg
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// poll calls ok until it is true, for at most limit, or until exited (a
// process the check waits for) is closed.
func poll(limit time.Duration, exited <-chan struct{}, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-exited:
			return errors.New("the process exited")
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// TestKubeDryRun sends every object the chart renders, for each values
// file, to a real kube-apiserver (with etcd) as a server-side dry run
// (?dryRun=All) with strict field validation: the API server's own
// defaulting, validation and admission, so that an invalid field, a wrong
// type or a misplaced key fails here rather than at helm install. The
// namespace and the CRDs are created first, as an operator's cluster has
// them.
func TestKubeDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no kube-apiserver")
	}
	cfg := startKube(t)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crdRes := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range crds {
		if _, err := dyn.Resource(crdRes).Create(ctx, crdManifest(c.group, c.version, c.kind, c.plural), metav1.CreateOptions{}); err != nil {
			t.Fatalf("CRD %s.%s: %v", c.plural, c.group, err)
		}
	}
	// the custom resources are served once the CRDs are established
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cached := memory.NewMemCacheClient(disc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	if err := poll(60*time.Second, nil, func() bool {
		cached.Invalidate()
		mapper.Reset()
		for _, c := range crds {
			if _, err := mapper.RESTMapping(schema.GroupKind{Group: c.group, Kind: c.kind}, c.version); err != nil {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("the CRDs are not served: %v", err)
	}

	dryRun := func(u *unstructured.Unstructured) error {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("the API server serves no such kind: %w", err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if u.GetNamespace() == "" {
				u.SetNamespace(namespace)
			}
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		_, err = ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if se, ok := err.(apierrors.APIStatus); ok && se.Status().Details != nil {
			msg := err.Error()
			for _, c := range se.Status().Details.Causes {
				msg += fmt.Sprintf("\n  %s: %s", c.Field, c.Message)
			}
			return errors.New(msg)
		}
		return err
	}

	for _, vc := range valuesCases {
		t.Run(vc.name, func(t *testing.T) {
			manifest, err := render(vc.files...)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, doc := range strings.Split(manifest, "\n---\n") {
				doc = strings.TrimPrefix(strings.TrimSpace(doc), "---\n")
				if doc == "" {
					continue
				}
				src, _, _ := strings.Cut(doc, "\n")
				var u unstructured.Unstructured
				if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
					t.Fatalf("%s: %v", src, err)
				}
				if len(u.Object) == 0 {
					continue
				}
				if err := dryRun(&u); err != nil {
					t.Errorf("%s: %s %s rejected by kube-apiserver: %v", strings.TrimPrefix(src, "# Source: "), u.GetKind(), u.GetName(), err)
					continue
				}
				n++
			}
			if n == 0 {
				t.Fatal("no object was sent")
			}
			t.Logf("%d objects accepted in a server-side dry run", n)
		})
	}

	// the dry run catches what the schema forbids: the server Deployment of
	// the default values, each time with one mistake
	manifest, err := render()
	if err != nil {
		t.Fatal(err)
	}
	var server map[string]any
	for _, doc := range strings.Split(manifest, "\n---\n") {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(doc), "---\n")), &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.GetKind() == "Deployment" && u.GetName() == serverName {
			server = u.Object
		}
	}
	if server == nil {
		t.Fatal("no server Deployment rendered")
	}
	for _, bad := range []struct {
		name  string
		path  []string
		value any
		want  string
	}{
		{"unknown field", []string{"spec", "template", "spec", "terminationGracePeriod"}, int64(40), "unknown field"},
		{"wrong type", []string{"spec", "replicas"}, "two", "replicas"},
		{"invalid value", []string{"spec", "strategy", "rollingUpdate", "maxUnavailable"}, "150%", "maxUnavailable"},
		{"invalid label", []string{"metadata", "labels", "app.kubernetes.io/name"}, "kiln server", "metadata.labels"},
	} {
		t.Run("rejects "+bad.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(server)}
			if err := unstructured.SetNestedField(u.Object, bad.value, bad.path...); err != nil {
				t.Fatal(err)
			}
			err := dryRun(u)
			if err == nil {
				t.Fatalf("%s = %v: accepted, want an error", strings.Join(bad.path, "."), bad.value)
			}
			if !strings.Contains(err.Error(), bad.want) {
				t.Errorf("%s = %v: %v; want an error naming %q", strings.Join(bad.path, "."), bad.value, err, bad.want)
			}
		})
	}
}
