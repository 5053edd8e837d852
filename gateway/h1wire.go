package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/textproto"
)

// The HTTP/1.1 message heads that the gateway reads itself: the requests
// of its clients (h1server.go) and the answers of its backends
// (h1client.go). Both read into a header map kept by the connection and
// take the strings of header lines from a cache kept by the connection
// too: on a keep-alive connection the same lines come again and again
// (Content-Type, Host, a token), so that reading a head allocates nothing
// once a connection has seen its lines.

// maxHead is the largest message head read (request line or status line
// and header lines); a longer one is refused (or, from a client, handed
// to net/http's server).
const maxHead = 32 << 10

// errHeadTooLarge: a head over maxHead, or over the reader's buffer.
var errHeadTooLarge = errors.New("gateway: message head too large")

// errBadHead: a head that is not HTTP/1.x as the gateway reads it.
var errBadHead = errors.New("gateway: malformed HTTP/1.1 head")

// peekHead returns the next message head in br, up to and including the
// empty line that ends it, without consuming it; it reads from br's
// source as needed. A head with bare LF line ends, or one longer than
// maxHead or br's buffer, is errBadHead or errHeadTooLarge.
func peekHead(br *bufio.Reader) ([]byte, error) {
	n := 0 // bytes already searched
	for {
		buf, err := br.Peek(max(br.Buffered(), 1))
		if len(buf) > n {
			if i := bytes.Index(buf[max(n-3, 0):], crlfcrlf); i >= 0 {
				head := buf[:max(n-3, 0)+i+4]
				if bytes.Contains(head, lflf) {
					return nil, errBadHead
				}
				return head, nil
			}
			if bytes.Contains(buf, lflf) {
				return nil, errBadHead
			}
			n = len(buf)
		}
		if err != nil {
			return nil, err
		}
		if n >= maxHead || n >= br.Size() {
			return nil, errHeadTooLarge
		}
		if _, err := br.Peek(n + 1); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if buf, _ := br.Peek(br.Buffered()); len(buf) > n {
				continue // what came before the error is searched first
			}
			return nil, err
		}
	}
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
	crlf     = []byte("\r\n")
)

// headerLine is a header line's strings: its key in canonical form, its
// value, and the value as the one-element slice a header map holds.
type headerLine struct {
	key string
	vs  []string
}

// lineCache maps a header line's bytes to its strings.
type lineCache map[string]headerLine

// maxCachedLines bounds a connection's cache: lines beyond it are read
// into new strings each time.
const maxCachedLines = 64

// headerFlags are what the readers need to know of a head's headers
// beyond the map.
type headerFlags struct {
	contentLength  int64 // -1 when none
	chunked        bool  // Transfer-Encoding: chunked (alone)
	otherEncoding  bool  // a Transfer-Encoding other than chunked
	connClose      bool  // Connection: close
	connOther      bool  // a Connection value other than close or keep-alive (upgrade)
	upgrade        bool  // an Upgrade header
	expect         bool  // an Expect header other than 100-continue
	expectContinue bool  // Expect: 100-continue
	badLength      bool  // a Content-Length that is no number, or two that differ
	hasHost        bool
	hasTransferEnc bool
}

// readHeaderLines reads the header lines of a head (after its first line,
// up to the empty line) into h, which it clears first; lines folded over
// several lines (obsolete) or with invalid keys are errBadHead.
func readHeaderLines(lines []byte, h http.Header, cache lineCache) (headerFlags, error) {
	clear(h)
	f := headerFlags{contentLength: -1}
	for len(lines) > 0 {
		i := bytes.Index(lines, crlf)
		if i < 0 {
			return f, errBadHead
		}
		line := lines[:i]
		lines = lines[i+2:]
		if len(line) == 0 {
			break // the end of the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			return f, errBadHead // obsolete line folding
		}
		if bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
			return f, errBadHead // a bare CR or LF
		}
		e, ok := cache[string(line)]
		if !ok {
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return f, errBadHead
			}
			kb := line[:colon]
			for _, c := range kb {
				if !validHeaderKeyByte(c) {
					return f, errBadHead
				}
			}
			v := textproto.TrimBytes(line[colon+1:])
			for _, c := range v {
				if c < ' ' && c != '\t' || c == 0x7f {
					return f, errBadHead
				}
			}
			e = headerLine{key: textproto.CanonicalMIMEHeaderKey(string(kb)), vs: []string{string(v)}}
			if len(cache) < maxCachedLines {
				cache[string(line)] = e
			}
		}
		if old, dup := h[e.key]; dup {
			h[e.key] = append(old[:len(old):len(old)], e.vs[0]) // a copy: the cached slice is not changed
		} else {
			h[e.key] = e.vs
		}
		v := e.vs[0]
		switch e.key {
		case "Content-Length":
			n, ok := parseLength(v)
			if !ok || f.contentLength >= 0 && f.contentLength != n {
				f.badLength = true
			}
			f.contentLength = n
		case "Transfer-Encoding":
			f.hasTransferEnc = true
			if asciiEqualFold(v, "chunked") && !f.chunked && !f.otherEncoding {
				f.chunked = true
			} else {
				f.chunked, f.otherEncoding = false, true
			}
		case "Connection":
			for rest, more := v, true; more; {
				var t string
				t, rest, more = cutByte(rest, ',')
				switch t = trimSpace(t); {
				case asciiEqualFold(t, "close"):
					f.connClose = true
				case asciiEqualFold(t, "keep-alive"), t == "":
				default:
					f.connOther = true
				}
			}
		case "Upgrade":
			f.upgrade = true
		case "Expect":
			if asciiEqualFold(v, "100-continue") && !f.expectContinue {
				f.expectContinue = true
			} else {
				f.expect = true
			}
		case "Host":
			f.hasHost = true
		}
	}
	return f, nil
}

func cutByte(s string, c byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseLength reads a Content-Length value: decimal digits only.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return -1, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// asciiEqualFold reports whether s equals the lower-case ASCII word t,
// ignoring case.
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != t[i] {
			return false
		}
	}
	return true
}

// validHeaderKeyByte reports whether c may be in a header key (an RFC 9110 token).
func validHeaderKeyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// internCache keeps the last string made of some bytes (a request's URI,
// a status line's reason) so that the same bytes again give the same
// string without allocating.
type internCache struct {
	last string
}

func (c *internCache) get(b []byte) string {
	if string(b) != c.last { // compared without allocating
		c.last = string(b)
	}
	return c.last
}
