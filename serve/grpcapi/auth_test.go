package grpcapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

func TestBearer(t *testing.T) {
	for _, tt := range []struct {
		in, tok string
		ok      bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{" Bearer abc", "abc", true},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"", "", false},
		{"abc", "", false},
	} {
		tok, ok := bearer(tt.in)
		if tok != tt.tok || ok != tt.ok {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", tt.in, tok, ok, tt.tok, tt.ok)
		}
	}
}

func TestAuthToken(t *testing.T) {
	a := Auth{InferToken: "i", AdminToken: "a"}
	for _, tt := range []struct{ method, want string }{
		{"/inference.GRPCInferenceService/ServerLive", ""},
		{"/inference.GRPCInferenceService/ServerReady", ""},
		{"/grpc.health.v1.Health/Check", ""},
		{"/grpc.health.v1.Health/Watch", ""},
		{"/inference.GRPCInferenceService/ModelReady", "i"},
		{"/inference.GRPCInferenceService/ServerMetadata", "i"},
		{"/inference.GRPCInferenceService/ModelMetadata", "i"},
		{"/inference.GRPCInferenceService/ModelConfig", "i"},
		{"/inference.GRPCInferenceService/ModelStatistics", "i"},
		{"/inference.GRPCInferenceService/ModelInfer", "i"},
		{"/inference.GRPCInferenceService/ModelStreamInfer", "i"},
		{"/inference.GRPCInferenceService/RepositoryIndex", "a"},
		{"/inference.GRPCInferenceService/RepositoryModelLoad", "a"},
		{"/inference.GRPCInferenceService/RepositoryModelUnload", "a"},
		{"/inference.GRPCInferenceService/TraceSetting", "a"},
		{"/inference.GRPCInferenceService/LogSettings", "a"},
		{"/inference.GRPCInferenceService/SystemSharedMemoryRegister", "i"},
		{"/inference.GRPCInferenceService/CudaSharedMemoryStatus", "i"},
		{"/other.Service/Method", "i"},
	} {
		if got := a.token(tt.method); got != tt.want {
			t.Errorf("%s needs %q, want %q", tt.method, got, tt.want)
		}
	}
}

// tlsPair returns a self-signed server certificate for 127.0.0.1 and a pool
// that trusts it.
func tlsPair(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln grpc test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// startAuth serves a repository holding "tiny" over gRPC with explicit
// model control, the health service, and a's interceptors, plaintext or TLS.
func startAuth(t *testing.T, a Auth, useTLS bool) *grpc.ClientConn {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tiny", "1"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "tiny", "1", "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	s := serve.New(serve.Options{Repository: dir})
	if err := s.Load("tiny"); err != nil {
		t.Fatal(err)
	}
	opts := a.ServerOptions()
	dial := grpc.WithTransportCredentials(insecure.NewCredentials())
	if useTLS {
		cert, pool := tlsPair(t)
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
		dial = grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, ""))
	}
	g := grpc.NewServer(opts...)
	Register(g, s, true)
	healthpb.RegisterHealthServer(g, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); s.Shutdown(context.Background()) })
	return cc
}

// TestAuthRPCs calls every RPC with no token, a wrong one (and the other
// kind's), and the right one, over plaintext and TLS: the health checks
// are open, the repository RPCs need the admin token, the rest the
// inference token; a missing or wrong one is UNAUTHENTICATED.
func TestAuthRPCs(t *testing.T) {
	const inferTok, adminTok = "infer-secret", "admin-secret"
	in := examples.TinyCNNInput(1)
	req, err := api.NewInferRequest("tiny", map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	type rpc struct {
		name  string
		token string // the token it needs ("" for none)
		call  func(context.Context, inference.GRPCInferenceServiceClient, healthpb.HealthClient) error
	}
	// In call order: with the right token each succeeds; unload comes last.
	rpcs := []rpc{
		{"Health.Check", "", func(ctx context.Context, _ inference.GRPCInferenceServiceClient, h healthpb.HealthClient) error {
			_, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}},
		{"ServerLive", "", func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ServerLive(ctx, &inference.ServerLiveRequest{})
			return err
		}},
		{"ServerReady", "", func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ServerReady(ctx, &inference.ServerReadyRequest{})
			return err
		}},
		{"ModelReady", inferTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: "tiny"})
			return err
		}},
		{"ServerMetadata", inferTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ServerMetadata(ctx, &inference.ServerMetadataRequest{})
			return err
		}},
		{"ModelMetadata", inferTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "tiny"})
			return err
		}},
		{"ModelConfig", inferTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ModelConfig(ctx, &inference.ModelConfigRequest{Name: "tiny"})
			return err
		}},
		{"ModelInfer", inferTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ModelInfer(ctx, req)
			return err
		}},
		{"ModelStreamInfer", inferTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			st, err := c.ModelStreamInfer(ctx)
			if err != nil {
				return err
			}
			if err := st.Send(req); err != nil {
				_, err = st.Recv() // the status is read from the receive side
				return err
			}
			r, err := st.Recv()
			if err != nil {
				return err
			}
			if r.GetErrorMessage() != "" {
				return status.Error(codes.Unknown, r.GetErrorMessage())
			}
			return st.CloseSend()
		}},
		{"ModelStatistics", inferTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "tiny"})
			return err
		}},
		{"RepositoryIndex", adminTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.RepositoryIndex(ctx, &inference.RepositoryIndexRequest{})
			return err
		}},
		{"RepositoryModelLoad", adminTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.RepositoryModelLoad(ctx, &inference.RepositoryModelLoadRequest{ModelName: "tiny"})
			return err
		}},
		{"RepositoryModelUnload", adminTok, func(ctx context.Context, c inference.GRPCInferenceServiceClient, _ healthpb.HealthClient) error {
			_, err := c.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{ModelName: "tiny"})
			return err
		}},
	}
	for _, useTLS := range []bool{false, true} {
		name := map[bool]string{false: "plaintext", true: "TLS"}[useTLS]
		t.Run(name, func(t *testing.T) {
			cc := startAuth(t, Auth{InferToken: inferTok, AdminToken: adminTok}, useTLS)
			c, h := inference.NewGRPCInferenceServiceClient(cc), healthpb.NewHealthClient(cc)
			// Each case gives the authorization header for an RPC that needs
			// a token and whether it is the right one. Unload is last.
			for _, cred := range []struct {
				name   string
				header func(need string) (string, bool)
			}{
				{"none", func(string) (string, bool) { return "", false }},
				{"wrong", func(string) (string, bool) { return "Bearer nope", false }},
				{"not bearer", func(need string) (string, bool) { return "Basic " + need, false }},
				{"infer token", func(need string) (string, bool) { return "Bearer " + inferTok, need == inferTok }},
				{"right token, lowercase scheme", func(need string) (string, bool) { return "bearer " + need, true }},
				{"admin token", func(need string) (string, bool) { return "Bearer " + adminTok, need == adminTok }},
			} {
				for _, r := range rpcs {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					header, right := cred.header(r.token)
					if header != "" {
						ctx = metadata.AppendToOutgoingContext(ctx, "authorization", header)
					}
					err := r.call(ctx, c, h)
					cancel()
					switch {
					case r.token == "" && err != nil:
						t.Errorf("%s with %s: %v, want open", r.name, cred.name, err)
					case r.token != "" && right && err != nil:
						t.Errorf("%s with %s: %v, want success", r.name, cred.name, err)
					case r.token != "" && !right && status.Code(err) != codes.Unauthenticated:
						t.Errorf("%s with %s: %v, want UNAUTHENTICATED", r.name, cred.name, err)
					}
				}
			}
		})
	}
}

// TestAuthOneToken: with only an inference token, the repository RPCs are
// as open as HTTP's repository API is; with only an admin token, the
// inference RPCs are.
func TestAuthOneToken(t *testing.T) {
	for _, tt := range []struct {
		auth                 Auth
		indexOpen, inferOpen bool
	}{
		{Auth{InferToken: "i"}, true, false},
		{Auth{AdminToken: "a"}, false, true},
		{Auth{}, true, true},
	} {
		cc := startAuth(t, tt.auth, false)
		c := inference.NewGRPCInferenceServiceClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, ierr := c.RepositoryIndex(ctx, &inference.RepositoryIndexRequest{})
		_, merr := c.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "tiny"})
		cancel()
		if (ierr == nil) != tt.indexOpen || (ierr != nil && status.Code(ierr) != codes.Unauthenticated) {
			t.Errorf("%+v: RepositoryIndex without a token: %v, open %v", tt.auth, ierr, tt.indexOpen)
		}
		if (merr == nil) != tt.inferOpen || (merr != nil && status.Code(merr) != codes.Unauthenticated) {
			t.Errorf("%+v: ModelMetadata without a token: %v, open %v", tt.auth, merr, tt.inferOpen)
		}
	}
}
