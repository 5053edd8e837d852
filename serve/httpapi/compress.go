package httpapi

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

// CompressMinBytes is the smallest response body compressed for a client
// that accepts gzip or deflate; smaller bodies are sent as they are (the
// Content-Encoding header says which), as compressing them costs more than
// it saves.
const CompressMinBytes = 1024

var (
	// ErrEncoding is returned for a compressed request body whose data is
	// damaged (a 400).
	ErrEncoding = errors.New("httpapi: bad compressed body")
	// ErrUnknownEncoding is returned for a request body with a
	// Content-Encoding other than gzip, deflate or identity (a 415).
	ErrUnknownEncoding = errors.New("httpapi: unsupported content encoding")
)

// decodeBody replaces the body of a request sent with "Content-Encoding:
// gzip" or "deflate" (zlib, as RFC 9110 and Triton's clients have it; raw
// deflate is accepted too) with its decompressed contents, bounded by
// limit: the handlers' own bound (http.MaxBytesReader) then applies to the
// decompressed size, so a small compressed body that expands past it is
// answered 413 without being expanded further. The compressed body is
// bounded by limit too. Nothing is read before the handler reads the body
// (a request refused before its body is read stays cheap).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64) error {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc == "" || enc == "identity" {
		return nil
	}
	if enc != "gzip" && enc != "x-gzip" && enc != "deflate" {
		return fmt.Errorf("%w: Content-Encoding %q (want gzip, deflate or identity)", ErrUnknownEncoding, enc)
	}
	r.Body = &decodedBody{raw: http.MaxBytesReader(w, r.Body, limit), enc: enc}
	r.ContentLength = -1
	r.Header.Del("Content-Encoding")
	r.Header.Del("Content-Length")
	return nil
}

// decodedBody is a decompressed request body, its decompressor made on the
// first Read; its errors of decompression wrap ErrEncoding (a 400), those
// of the raw body (too large, too slow) stay as they are.
type decodedBody struct {
	zr  io.ReadCloser
	raw io.ReadCloser
	enc string
	err error
}

func (d *decodedBody) Read(p []byte) (int, error) {
	if d.zr == nil && d.err == nil {
		d.zr, d.err = d.open()
	}
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.zr.Read(p)
	if err != nil && err != io.EOF {
		err = d.wrap(err)
	}
	return n, err
}

// open makes the decompressor, reading the stream's header.
func (d *decodedBody) open() (io.ReadCloser, error) {
	br := bufio.NewReader(d.raw)
	if d.enc == "deflate" {
		// zlib has a 2-byte header whose big-endian value is a multiple
		// of 31 with compression method 8; anything else is raw deflate.
		if h, err := br.Peek(2); err == nil && h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			return zr, d.wrap(err)
		}
		return flate.NewReader(br), nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, d.wrap(err)
	}
	return zr, nil
}

// wrap marks a decompression error as ErrEncoding, leaving the raw body's
// own errors (too large, too slow) as they are.
func (d *decodedBody) wrap(err error) error {
	var maxErr *http.MaxBytesError
	if err == nil || errors.As(err, &maxErr) || errors.Is(err, ErrBodyTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // an empty body is no compressed stream
	}
	return fmt.Errorf("%w: %s body: %w", ErrEncoding, d.enc, err)
}

func (d *decodedBody) Close() error {
	if d.zr != nil {
		d.zr.Close()
	}
	return d.raw.Close()
}

// acceptedEncoding returns the response encoding an Accept-Encoding header
// asks for: "gzip" or "deflate" (gzip first when both are accepted equally),
// or "" for none.
func acceptedEncoding(h string) string {
	best, bestQ := "", 0.0
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		q := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				continue
			}
			q = f
		}
		if name == "*" || name == "x-gzip" {
			name = "gzip"
		}
		if (name != "gzip" && name != "deflate") || q <= 0 {
			continue
		}
		if q > bestQ || q == bestQ && name == "gzip" {
			best, bestQ = name, q
		}
	}
	return best
}

var (
	gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }}
	zlibPool = sync.Pool{New: func() any { w, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed); return w }}
)

// compressWriter compresses a response body of at least CompressMinBytes
// with enc; a shorter one is sent as it is. It holds the status and up to
// CompressMinBytes of the body until it knows which.
type compressWriter struct {
	http.ResponseWriter
	enc  string
	code int
	buf  []byte
	zw   interface {
		io.WriteCloser
		Reset(io.Writer)
	}
}

func (c *compressWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *compressWriter) Write(p []byte) (int, error) {
	if c.zw != nil {
		return c.zw.Write(p)
	}
	if c.code == 0 {
		c.code = http.StatusOK
	}
	if len(c.buf)+len(p) < CompressMinBytes {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	h := c.ResponseWriter.Header()
	if h.Get("Content-Encoding") != "" {
		// the handler encoded it itself
		c.flushRaw()
		return c.zw.Write(p)
	}
	h.Del("Content-Length")
	h.Set("Content-Encoding", c.enc)
	h.Add("Vary", "Accept-Encoding")
	c.ResponseWriter.WriteHeader(c.code)
	if c.enc == "gzip" {
		c.zw = gzipPool.Get().(*gzip.Writer)
	} else {
		c.zw = zlibPool.Get().(*zlib.Writer)
	}
	c.zw.Reset(c.ResponseWriter)
	if len(c.buf) > 0 {
		buf := c.buf
		c.buf = nil
		if _, err := c.zw.Write(buf); err != nil {
			return 0, err
		}
	}
	return c.zw.Write(p)
}

// flushRaw sends the held status and body uncompressed; what follows goes
// through uncompressed too.
func (c *compressWriter) flushRaw() {
	c.ResponseWriter.WriteHeader(c.code)
	c.zw = nopCompressor{c.ResponseWriter}
	if len(c.buf) > 0 {
		c.ResponseWriter.Write(c.buf)
	}
	c.buf = nil
}

// finish ends the response: the compressed stream's trailer, or the held
// status and short body as they are.
func (c *compressWriter) finish() {
	switch z := c.zw.(type) {
	case nil:
		if c.code != 0 {
			c.flushRaw()
		}
	case nopCompressor:
	case *gzip.Writer:
		z.Close()
		z.Reset(nil)
		gzipPool.Put(z)
	case *zlib.Writer:
		z.Close()
		z.Reset(nil)
		zlibPool.Put(z)
	}
}

type nopCompressor struct{ io.Writer }

func (nopCompressor) Close() error    { return nil }
func (nopCompressor) Reset(io.Writer) {}

// compression decodes compressed request bodies and compresses responses
// for clients that accept it. WebSocket streams (.../stream) are left
// alone.
func (h *handler) compression(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/stream") {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Content-Encoding") != "" {
			if err := decodeBody(w, r, h.opts.MaxRequestBytes); err != nil {
				h.fail(w, err)
				return
			}
		}
		enc := ""
		if ae := r.Header.Get("Accept-Encoding"); ae != "" {
			enc = acceptedEncoding(ae)
		}
		if enc == "" {
			next.ServeHTTP(w, r)
			return
		}
		cw := &compressWriter{ResponseWriter: w, enc: enc}
		defer cw.finish()
		next.ServeHTTP(cw, r)
	})
}
