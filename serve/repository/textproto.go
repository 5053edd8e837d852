package repository

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSyntax is returned for config.pbtxt text that is not valid protobuf
// text format.
var ErrSyntax = errors.New("repository: bad protobuf text")

// maxDepth bounds the nesting of messages so that hostile input cannot
// exhaust the stack.
const maxDepth = 64

// Node is a protobuf text-format message read without a schema: its fields in
// the order they appear (a repeated field appears once per value).
type Node struct {
	Fields []*Field
}

// Field is one field of a Node: a scalar value or a nested message.
type Field struct {
	Name string
	Line int
	// Scalar is the value's text (strings unquoted and unescaped) when the
	// field is not a message.
	Scalar string
	// Quoted reports whether Scalar came from a string literal.
	Quoted bool
	// Msg is the nested message, nil for a scalar.
	Msg *Node
}

// Get returns the fields named name.
func (n *Node) Get(name string) []*Field {
	var out []*Field
	for _, f := range n.Fields {
		if f.Name == name {
			out = append(out, f)
		}
	}
	return out
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokNumber
	tokString
	tokPunct
)

type token struct {
	kind tokKind
	text string
	line int
}

type lexer struct {
	src  string
	pos  int
	line int
	peek *token
}

func (l *lexer) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrSyntax, line, fmt.Sprintf(format, args...))
}

func (l *lexer) next() (token, error) {
	if l.peek != nil {
		t := *l.peek
		l.peek = nil
		return t, nil
	}
	return l.scan()
}

func (l *lexer) lookahead() (token, error) {
	if l.peek == nil {
		t, err := l.scan()
		if err != nil {
			return t, err
		}
		l.peek = &t
	}
	return *l.peek, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func (l *lexer) scan() (token, error) {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\n':
			l.line++
			l.pos++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			l.pos++
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		default:
			goto tok
		}
	}
	return token{kind: tokEOF, line: l.line}, nil
tok:
	start, c := l.pos, l.src[l.pos]
	switch {
	case isIdentStart(c):
		for l.pos < len(l.src) && (isIdentChar(l.src[l.pos]) || l.src[l.pos] == '.') {
			l.pos++
		}
		return token{kind: tokIdent, text: l.src[start:l.pos], line: l.line}, nil
	case c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.':
		l.pos++
		for l.pos < len(l.src) {
			d := l.src[l.pos]
			if isIdentChar(d) || d == '.' || (d == '-' || d == '+') && (l.src[l.pos-1] == 'e' || l.src[l.pos-1] == 'E') {
				l.pos++
				continue
			}
			break
		}
		return token{kind: tokNumber, text: l.src[start:l.pos], line: l.line}, nil
	case c == '"' || c == '\'':
		l.pos++
		var sb strings.Builder
		for {
			if l.pos >= len(l.src) || l.src[l.pos] == '\n' {
				return token{}, l.errorf(l.line, "unterminated string")
			}
			d := l.src[l.pos]
			if d == c {
				l.pos++
				break
			}
			if d == '\\' {
				if l.pos+1 >= len(l.src) {
					return token{}, l.errorf(l.line, "unterminated string")
				}
				e := l.src[l.pos+1]
				l.pos += 2
				switch e {
				case 'n':
					sb.WriteByte('\n')
				case 't':
					sb.WriteByte('\t')
				case 'r':
					sb.WriteByte('\r')
				case '\\', '"', '\'':
					sb.WriteByte(e)
				default:
					return token{}, l.errorf(l.line, "unsupported escape \\%c", e)
				}
				continue
			}
			sb.WriteByte(d)
			l.pos++
		}
		return token{kind: tokString, text: sb.String(), line: l.line}, nil
	case strings.IndexByte("{}<>[]:,;", c) >= 0:
		l.pos++
		return token{kind: tokPunct, text: string(c), line: l.line}, nil
	}
	return token{}, l.errorf(l.line, "unexpected character %q", c)
}

// ParseText parses protobuf text format into a Node tree without a schema.
func ParseText(src string) (*Node, error) {
	l := &lexer{src: src, line: 1}
	n, err := parseMessage(l, "", 0)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// parseMessage reads fields until the closing delimiter end ("" for EOF).
func parseMessage(l *lexer, end string, depth int) (*Node, error) {
	if depth > maxDepth {
		t, _ := l.lookahead()
		return nil, l.errorf(t.line, "messages nested deeper than %d", maxDepth)
	}
	n := &Node{}
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		if t.kind == tokEOF {
			if end != "" {
				return nil, l.errorf(t.line, "missing %q", end)
			}
			return n, nil
		}
		if t.kind == tokPunct && t.text == end && end != "" {
			return n, nil
		}
		if t.kind == tokPunct && (t.text == "," || t.text == ";") {
			continue
		}
		if t.kind != tokIdent {
			return nil, l.errorf(t.line, "want a field name, got %q", t.text)
		}
		if err := parseField(l, n, t, depth); err != nil {
			return nil, err
		}
	}
}

func closer(open string) string {
	if open == "<" {
		return ">"
	}
	return "}"
}

func parseField(l *lexer, n *Node, name token, depth int) error {
	t, err := l.next()
	if err != nil {
		return err
	}
	colon := false
	if t.kind == tokPunct && t.text == ":" {
		colon = true
		if t, err = l.next(); err != nil {
			return err
		}
	}
	switch {
	case t.kind == tokPunct && (t.text == "{" || t.text == "<"):
		m, err := parseMessage(l, closer(t.text), depth+1)
		if err != nil {
			return err
		}
		n.Fields = append(n.Fields, &Field{Name: name.text, Line: name.line, Msg: m})
		return nil
	case t.kind == tokPunct && t.text == "[":
		// "input [ { ... } ]" without ':' is common in Triton configs.
		for i := 0; ; i++ {
			v, err := l.next()
			if err != nil {
				return err
			}
			if v.kind == tokPunct && v.text == "]" && i == 0 {
				return nil
			}
			f := &Field{Name: name.text, Line: name.line}
			switch {
			case v.kind == tokPunct && (v.text == "{" || v.text == "<"):
				m, err := parseMessage(l, closer(v.text), depth+1)
				if err != nil {
					return err
				}
				f.Msg = m
			case v.kind == tokPunct || v.kind == tokEOF:
				return l.errorf(v.line, "field %s: want a value, got %q", name.text, v.text)
			default:
				if err := scalarInto(l, f, v); err != nil {
					return err
				}
			}
			n.Fields = append(n.Fields, f)
			sep, err := l.next()
			if err != nil {
				return err
			}
			if sep.kind == tokPunct && sep.text == "]" {
				return nil
			}
			if sep.kind != tokPunct || sep.text != "," {
				return l.errorf(sep.line, "field %s: want ',' or ']' in list, got %q", name.text, sep.text)
			}
		}
	case !colon:
		return l.errorf(t.line, "field %s: want ':' or '{'", name.text)
	case t.kind == tokPunct || t.kind == tokEOF:
		return l.errorf(t.line, "field %s: want a value, got %q", name.text, t.text)
	}
	f := &Field{Name: name.text, Line: name.line}
	if err := scalarInto(l, f, t); err != nil {
		return err
	}
	n.Fields = append(n.Fields, f)
	return nil
}

// scalarInto stores a scalar token; adjacent string literals concatenate.
func scalarInto(l *lexer, f *Field, t token) error {
	f.Scalar = t.text
	if t.kind != tokString {
		return nil
	}
	f.Quoted = true
	for {
		nx, err := l.lookahead()
		if err != nil {
			return err
		}
		if nx.kind != tokString {
			return nil
		}
		l.next()
		f.Scalar += nx.text
	}
}

// Int returns the field's value as an integer.
func (f *Field) Int() (int64, error) {
	if f.Msg != nil || f.Quoted {
		return 0, fmt.Errorf("%w: line %d: %s: want an integer", ErrSyntax, f.Line, f.Name)
	}
	v, err := strconv.ParseInt(f.Scalar, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: line %d: %s: %q is not an integer", ErrSyntax, f.Line, f.Name, f.Scalar)
	}
	return v, nil
}

// Bool returns the field's value as a boolean.
func (f *Field) Bool() (bool, error) {
	if f.Msg == nil && !f.Quoted {
		switch f.Scalar {
		case "true", "True", "t", "1":
			return true, nil
		case "false", "False", "f", "0":
			return false, nil
		}
	}
	return false, fmt.Errorf("%w: line %d: %s: want true or false", ErrSyntax, f.Line, f.Name)
}

// Str returns the field's value as a string (a quoted literal).
func (f *Field) Str() (string, error) {
	if f.Msg != nil || !f.Quoted {
		return "", fmt.Errorf("%w: line %d: %s: want a quoted string", ErrSyntax, f.Line, f.Name)
	}
	return f.Scalar, nil
}

// Enum returns the field's value as an enum identifier.
func (f *Field) Enum() (string, error) {
	if f.Msg != nil || f.Quoted || f.Scalar == "" || !isIdentStart(f.Scalar[0]) {
		return "", fmt.Errorf("%w: line %d: %s: want an enum name", ErrSyntax, f.Line, f.Name)
	}
	return f.Scalar, nil
}
