package gateway

import (
	"bufio"
	"bytes"
	"io"
	"maps"
	"net/http"
	"reflect"
	"testing"
)

// FuzzRequestHead: a request head that the gateway's HTTP/1.1 loop takes
// is read as net/http reads it (method, URI, path, query, Host, headers,
// length, Connection: close); what it does not take goes to net/http, so
// it only has to agree where it says yes. `go test ./gateway -run '^$'
// -fuzz FuzzRequestHead` explores further.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
		"GET /v2/health/ready HTTP/1.1\r\nHost: gw\r\n\r\n",
		"GET /v2/models/m/versions/2/ready?x=1&y HTTP/1.1\r\nHost: gw:80\r\nConnection: close\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX:  v \t\r\nAuthorization: Bearer t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nBad Key: v\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET /\x80 HTTP/1.1\r\nHost: a\r\nX: \x80\x81\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := &srvConn{hdr: http.Header{}, cache: lineCache{}, req: new(http.Request)}
		c.body.c = c
		br := bufio.NewReaderSize(bytes.NewReader(raw), 64<<10)
		head, err := peekHead(br)
		if err != nil {
			return
		}
		r, ok := c.readRequest(head)
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("the loop took %q, net/http refuses it: %v", head, err)
		}
		got := maps.Clone(r.Header)
		wantH := maps.Clone(want.Header)
		delete(got, "Content-Length") // net/http keeps one of equal values
		delete(wantH, "Content-Length")
		for _, d := range []struct {
			what      string
			got, want any
		}{
			{"method", r.Method, want.Method},
			{"URI", r.RequestURI, want.RequestURI},
			{"path", r.URL.Path, want.URL.Path},
			{"query", r.URL.RawQuery, want.URL.RawQuery},
			{"host", r.Host, want.Host},
			{"header", got, wantH},
			{"length", r.ContentLength, want.ContentLength},
			{"close", r.Close, want.Close},
		} {
			if !reflect.DeepEqual(d.got, d.want) {
				t.Errorf("%q: %s %#v, net/http %#v", head, d.what, d.got, d.want)
			}
		}
	})
}

// FuzzAnswerHead: an answer head that the gateway's HTTP/1.1 client reads
// is read as net/http reads it (status, headers, length, body, keep-alive).
func FuzzAnswerHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nto the end",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 3\r\nX: a\r\nx: b\r\n\r\nabc",
		"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlarge",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := &h1Conn{br: bufio.NewReaderSize(bytes.NewReader(raw), 64<<10), hdr: http.Header{}, cache: lineCache{}}
		resp, err := c.readAnswer(http.MethodPost, watch{stop: func() bool { return true }})
		if err != nil {
			return
		}
		body, berr := io.ReadAll(resp.Body)
		wbr := bufio.NewReader(bytes.NewReader(raw))
		want, err := http.ReadResponse(wbr, &http.Request{Method: http.MethodPost})
		for err == nil && want.StatusCode >= 100 && want.StatusCode < 200 && want.StatusCode != 101 {
			want, err = http.ReadResponse(wbr, &http.Request{Method: http.MethodPost})
		}
		if err != nil {
			t.Fatalf("the client took %q, net/http refuses it: %v", raw, err)
		}
		wantBody, wberr := io.ReadAll(want.Body)
		if (berr == nil) != (wberr == nil) || berr == nil && !bytes.Equal(body, wantBody) {
			t.Errorf("%q: body %q (%v), net/http %q (%v)", raw, body, berr, wantBody, wberr)
		}
		got, wantH := maps.Clone(resp.Header), maps.Clone(want.Header)
		for _, k := range []string{"Content-Length", "Connection", "Transfer-Encoding"} {
			delete(got, k) // net/http moves these into fields
			delete(wantH, k)
		}
		// a chunked answer's connection is not kept (what follows its last chunk is not read)
		if resp.StatusCode != want.StatusCode || !reflect.DeepEqual(got, wantH) || resp.Close && !want.Close && resp.TransferEncoding == nil {
			t.Errorf("%q: %d %v close %v, net/http %d %v close %v", raw, resp.StatusCode, got, resp.Close, want.StatusCode, wantH, want.Close)
		}
	})
}
