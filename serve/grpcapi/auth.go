package grpcapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Auth holds the bearer tokens the gRPC front end requires, as the HTTP
// front end does: AdminToken for the repository RPCs (RepositoryIndex,
// RepositoryModelLoad, RepositoryModelUnload) and the trace and log
// settings (TraceSetting, LogSettings), InferToken for every other
// RPC of inference.GRPCInferenceService (inference, metadata, config,
// statistics, model readiness), and none for the health checks (ServerLive,
// ServerReady and the grpc.health.v1 service), which stay open like HTTP's
// /v2/health/live and /v2/health/ready. An empty token requires nothing.
//
// A client sends its token as the metadata "authorization: Bearer <token>";
// the scheme is case-insensitive (RFC 7235).
type Auth struct {
	InferToken, AdminToken string
}

const servicePrefix = "/inference.GRPCInferenceService/"

// token returns the token a full method name needs ("" for none).
func (a Auth) token(fullMethod string) string {
	method, ok := strings.CutPrefix(fullMethod, servicePrefix)
	if !ok {
		if strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") {
			return ""
		}
		return a.InferToken // any other service: as inference
	}
	switch method {
	case "ServerLive", "ServerReady":
		return ""
	case "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "TraceSetting", "LogSettings":
		return a.AdminToken
	}
	return a.InferToken
}

// errUnauthenticated is the answer to a missing or wrong token.
var errUnauthenticated = status.Error(codes.Unauthenticated, "missing or wrong bearer token (metadata \"authorization: Bearer <token>\")")

// bearer returns the token of an "authorization" value with the Bearer
// scheme, in any case, and whether it has one.
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimLeft(v, " "), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.Trim(tok, " ")
	return tok, tok != ""
}

// equal compares two tokens in constant time, their lengths included.
func equal(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// check returns nil when ctx's metadata carries the token fullMethod needs.
func (a Auth) check(ctx context.Context, fullMethod string) error {
	want := a.token(fullMethod)
	if want == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return errUnauthenticated
	}
	got, ok := bearer(vals[0])
	if !ok || !equal(got, want) {
		return errUnauthenticated
	}
	return nil
}

// Unary returns the unary interceptor that enforces a.
func (a Auth) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if err := a.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// Stream returns the stream interceptor that enforces a, checked once when
// the stream opens.
func (a Auth) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		if err := a.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return next(srv, ss)
	}
}

// ServerOptions returns the grpc.ServerOptions that install a's
// interceptors (none when a requires no token).
func (a Auth) ServerOptions() []grpc.ServerOption {
	if a.InferToken == "" && a.AdminToken == "" {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.Unary()), grpc.ChainStreamInterceptor(a.Stream())}
}
