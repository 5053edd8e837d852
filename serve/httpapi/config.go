package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ConfigJSON returns a model config message as the HTTP model config shows
// it: protojson with the proto's field names and default values shown, and
// 64-bit integers as JSON numbers (protojson writes them as strings; Triton's
// HTTP config, and its clients, have numbers), keys sorted.
func ConfigJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(intsAsNumbers(m.ProtoReflect().Descriptor(), v))
}

// intsAsNumbers turns the 64-bit integer fields of v, the JSON of a message
// of type md, from strings into numbers.
func intsAsNumbers(md protoreflect.MessageDescriptor, v any) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, x := range obj {
		fd := md.Fields().ByName(protoreflect.Name(k))
		if fd == nil {
			continue
		}
		switch {
		case fd.IsMap():
			if m, ok := x.(map[string]any); ok {
				for mk, mv := range m {
					m[mk] = fieldValue(fd.MapValue(), mv)
				}
			}
		case fd.IsList():
			if l, ok := x.([]any); ok {
				for i := range l {
					l[i] = fieldValue(fd, l[i])
				}
			}
		default:
			obj[k] = fieldValue(fd, x)
		}
	}
	return obj
}

// fieldValue is one value of field fd (a list's element, a map's value).
func fieldValue(fd protoreflect.FieldDescriptor, v any) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return intsAsNumbers(fd.Message(), v)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if s, ok := v.(string); ok {
			return json.Number(s)
		}
	}
	return v
}

func (h *handler) config(w http.ResponseWriter, r *http.Request) {
	cfg, _, err := h.s.ModelConfig(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		h.fail(w, err)
		return
	}
	b, err := ConfigJSON(cfg.ModelConfig())
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
