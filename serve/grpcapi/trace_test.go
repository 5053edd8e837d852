package grpcapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
)

func TestTraceAndLogSettingsGRPC(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sv := func(v ...string) *inference.TraceSettingRequest_SettingValue {
		return &inference.TraceSettingRequest_SettingValue{Value: v}
	}
	for _, st := range []struct {
		name string
		req  *inference.TraceSettingRequest
		code codes.Code
		want map[string]string
	}{
		{"defaults", &inference.TraceSettingRequest{}, codes.OK, map[string]string{"trace_level": "[OFF]", "trace_rate": "[1000]", "trace_mode": "[triton]"}},
		{"global", &inference.TraceSettingRequest{Settings: map[string]*inference.TraceSettingRequest_SettingValue{"trace_rate": sv("5"), "trace_level": sv("TIMESTAMPS")}},
			codes.OK, map[string]string{"trace_rate": "[5]", "trace_level": "[TIMESTAMPS]"}},
		{"model", &inference.TraceSettingRequest{ModelName: "tinycnn", Settings: map[string]*inference.TraceSettingRequest_SettingValue{"trace_count": sv("3")}},
			codes.OK, map[string]string{"trace_rate": "[5]", "trace_count": "[3]"}},
		{"model cleared", &inference.TraceSettingRequest{ModelName: "tinycnn", Settings: map[string]*inference.TraceSettingRequest_SettingValue{"trace_count": sv()}},
			codes.OK, map[string]string{"trace_count": "[-1]"}},
		{"unknown model", &inference.TraceSettingRequest{ModelName: "nope"}, codes.NotFound, nil},
		{"bad rate", &inference.TraceSettingRequest{Settings: map[string]*inference.TraceSettingRequest_SettingValue{"trace_rate": sv("fast")}}, codes.InvalidArgument, nil},
		{"unknown", &inference.TraceSettingRequest{Settings: map[string]*inference.TraceSettingRequest_SettingValue{"x": sv("1")}}, codes.InvalidArgument, nil},
	} {
		resp, err := c.TraceSetting(ctx, st.req)
		if status.Code(err) != st.code {
			t.Fatalf("%s: %v, want %v", st.name, err, st.code)
		}
		for k, want := range st.want {
			if got := fmt.Sprint(resp.GetSettings()[k].GetValue()); got != want {
				t.Fatalf("%s: %s = %s, want %s", st.name, k, got, want)
			}
		}
	}

	lv := func(v any) *inference.LogSettingsRequest_SettingValue {
		switch x := v.(type) {
		case bool:
			return &inference.LogSettingsRequest_SettingValue{ParameterChoice: &inference.LogSettingsRequest_SettingValue_BoolParam{BoolParam: x}}
		case uint32:
			return &inference.LogSettingsRequest_SettingValue{ParameterChoice: &inference.LogSettingsRequest_SettingValue_Uint32Param{Uint32Param: x}}
		case string:
			return &inference.LogSettingsRequest_SettingValue{ParameterChoice: &inference.LogSettingsRequest_SettingValue_StringParam{StringParam: x}}
		}
		return &inference.LogSettingsRequest_SettingValue{}
	}
	resp, err := c.LogSettings(ctx, &inference.LogSettingsRequest{})
	if err != nil || !resp.GetSettings()["log_info"].GetBoolParam() || resp.GetSettings()["log_format"].GetStringParam() != "default" {
		t.Fatalf("log defaults: %v %v", resp, err)
	}
	resp, err = c.LogSettings(ctx, &inference.LogSettingsRequest{Settings: map[string]*inference.LogSettingsRequest_SettingValue{
		"log_warning": lv(false), "log_verbose_level": lv(uint32(2)), "log_format": lv("ISO8601")}})
	if err != nil || resp.GetSettings()["log_warning"].GetBoolParam() || resp.GetSettings()["log_verbose_level"].GetUint32Param() != 2 ||
		resp.GetSettings()["log_format"].GetStringParam() != "ISO8601" {
		t.Fatalf("log update: %v %v", resp, err)
	}
	for name, bad := range map[string]map[string]*inference.LogSettingsRequest_SettingValue{
		"info as a string": {"log_info": lv("yes")},
		"no value":         {"log_info": lv(nil)},
		"a log file":       {"log_file": lv("/tmp/x.log")},
		"unknown":          {"log_colour": lv(true)},
	} {
		if _, err := c.LogSettings(ctx, &inference.LogSettingsRequest{Settings: bad}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if md, err := c.ServerMetadata(ctx, &inference.ServerMetadataRequest{}); err != nil || fmt.Sprint(md.GetExtensions()[len(md.GetExtensions())-2:]) != "[trace logging]" {
		t.Fatalf("server metadata: %v %v", md, err)
	}
}
