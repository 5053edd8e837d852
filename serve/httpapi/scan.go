package httpapi

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of JSON arrays and objects in a request.
const maxDepth = 64

// errSyntax is wrapped by every error of the scanner.
var errSyntax = errors.New("invalid JSON")

// scanner reads JSON from a byte slice in place: it validates as it goes,
// allocates nothing for structure, numbers or keys without escapes, and
// lets its caller decide what to keep (so that a request's numbers go
// straight into a tensor buffer).
type scanner struct {
	b   []byte
	pos int
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errSyntax, s.pos, fmt.Sprintf(format, args...))
}

// ws skips white space.
func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.b) {
		return 0
	}
	return s.b[s.pos]
}

// expect skips white space and consumes c.
func (s *scanner) expect(c byte) error {
	if got := s.peek(); got != c {
		if got == 0 {
			return s.errorf("unexpected end of input, want %q", c)
		}
		return s.errorf("found %q, want %q", got, c)
	}
	s.pos++
	return nil
}

// more is called after an element of an array or object (closing byte
// end): it consumes a comma and reports true, or the closing byte and
// reports false.
func (s *scanner) more(end byte) (bool, error) {
	switch c := s.peek(); c {
	case ',':
		s.pos++
		return true, nil
	case end:
		s.pos++
		return false, nil
	case 0:
		return false, s.errorf("unexpected end of input, want ',' or %q", end)
	default:
		return false, s.errorf("found %q, want ',' or %q", c, end)
	}
}

// first is called after an opening bracket: it consumes the closing byte of
// an empty array or object and reports false, else reports true.
func (s *scanner) first(end byte) bool {
	if s.peek() == end {
		s.pos++
		return false
	}
	return true
}

// strBytes reads a string. Without escapes it returns a view into the input
// (valid until the input changes); with them, a new slice.
func (s *scanner) strBytes() ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start := s.pos
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.pos = i + 1
			return s.b[start:i], nil
		case c == '\\':
			return s.unescape(start)
		case c < 0x20:
			s.pos = i
			return nil, s.errorf("control character %#x in a string", c)
		}
	}
	s.pos = len(s.b)
	return nil, s.errorf("unterminated string")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape decodes a string with escapes that starts at start (just after
// its opening quote).
func (s *scanner) unescape(start int) ([]byte, error) {
	out := make([]byte, 0, 16)
	i := start
	for i < len(s.b) {
		c := s.b[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return out, nil
		case c < 0x20:
			s.pos = i
			return nil, s.errorf("control character %#x in a string", c)
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(s.b) {
			break
		}
		i++
		switch e := s.b[i]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s.b[i+1:])
			if !ok {
				s.pos = i
				return nil, s.errorf(`bad \u escape`)
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s.b[min(i+3, len(s.b)):]); ok && i+2 < len(s.b) && s.b[i+1] == '\\' && s.b[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			s.pos = i
			return nil, s.errorf("bad escape \\%c", e)
		}
		i++
	}
	s.pos = len(s.b)
	return nil, s.errorf("unterminated string")
}

// str reads a string into a new Go string.
func (s *scanner) str() (string, error) {
	b, err := s.strBytes()
	return string(b), err
}

// number reads a number, checked against JSON's grammar, and returns its
// text (a view into the input) and whether it is an integer (no fraction,
// no exponent).
func (s *scanner) number() (tok []byte, integer bool, err error) {
	s.ws()
	start, i, b := s.pos, s.pos, s.b
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		s.pos = i
		return nil, false, s.errorf("want a number")
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		i++
		integer = false
		if digits() == 0 {
			s.pos = i
			return nil, false, s.errorf("want digits after the decimal point")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		integer = false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			s.pos = i
			return nil, false, s.errorf("want digits in the exponent")
		}
	}
	s.pos = i
	return b[start:i], integer, nil
}

// literal consumes the word w (true, false, null).
func (s *scanner) literal(w string) bool {
	s.ws()
	if len(s.b)-s.pos >= len(w) && string(s.b[s.pos:s.pos+len(w)]) == w {
		s.pos += len(w)
		return true
	}
	return false
}

// skip reads and validates any value without keeping it.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	switch c := s.peek(); c {
	case '{':
		s.pos++
		if !s.first('}') {
			return nil
		}
		for {
			if _, err := s.strBytes(); err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if more, err := s.more('}'); err != nil || !more {
				return err
			}
		}
	case '[':
		s.pos++
		if !s.first(']') {
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if more, err := s.more(']'); err != nil || !more {
				return err
			}
		}
	case '"':
		_, err := s.strBytes()
		return err
	case 't', 'f', 'n':
		if s.literal("true") || s.literal("false") || s.literal("null") {
			return nil
		}
		return s.errorf("unknown literal")
	case 0:
		return s.errorf("unexpected end of input, want a value")
	default:
		_, _, err := s.number()
		return err
	}
}

// end checks that nothing but white space is left.
func (s *scanner) end() error {
	if s.ws(); s.pos < len(s.b) {
		return s.errorf("unexpected %q after the end of the JSON value", s.b[s.pos])
	}
	return nil
}

// pow10 are the powers of ten that float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// decimal reads a number, checked against JSON's grammar as number does,
// in one pass: it returns the number's text (a view into the input) and,
// when exact, its value as the correctly rounded float64. A number whose
// significant digits make an integer below 2^53 and whose decimal exponent
// is within ±22 (almost every number a client sends) is exact: its digits
// and the power of ten are float64s exactly, and one multiplication or
// division rounds once (Clinger's fast path). Other numbers are left to
// strconv.
func (s *scanner) decimal() (tok []byte, f float64, exact bool, err error) {
	s.ws()
	b := s.b
	start, i := s.pos, s.pos
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	var mant uint64
	nd, exp := 0, 0 // significant digits in mant; mant * 10^exp is the value
	many := false   // more than 19 significant digits: mant is cut
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for ; i < len(b); i++ {
			c := b[i] - '0'
			if c > 9 {
				break
			}
			if nd < 19 {
				mant = mant*10 + uint64(c)
				nd++
			} else {
				many = true
				exp++
			}
		}
	default:
		s.pos = i
		return nil, 0, false, s.errorf("want a number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		from := i
		for ; i < len(b); i++ {
			c := b[i] - '0'
			if c > 9 {
				break
			}
			switch {
			case nd < 19:
				// leading zeros (0.00123) add nothing to mant, nor to nd
				mant = mant*10 + uint64(c)
				if mant != 0 {
					nd++
				}
				exp--
			default:
				many = true
			}
		}
		if i == from {
			s.pos = i
			return nil, 0, false, s.errorf("want digits after the decimal point")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		from, e := i, 0
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
			if e < 100000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == from {
			s.pos = i
			return nil, 0, false, s.errorf("want digits in the exponent")
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	s.pos = i
	tok = b[start:i]
	if many || mant >= 1<<53 {
		return tok, 0, false, nil
	}
	f = float64(mant)
	switch {
	case mant == 0 || exp == 0:
	case exp > 0 && exp < len(pow10):
		f *= pow10[exp]
	case exp < 0 && -exp < len(pow10):
		f /= pow10[-exp]
	default:
		return tok, 0, false, nil
	}
	if neg {
		f = -f
	}
	return tok, f, true, nil
}
