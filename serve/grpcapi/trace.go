package grpcapi

import (
	"context"
	"fmt"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve"
)

// TraceSetting updates and returns the trace settings, global or of a
// model; a setting given with no value is cleared.
func (v *Service) TraceSetting(_ context.Context, r *inference.TraceSettingRequest) (*inference.TraceSettingResponse, error) {
	var upd map[string][]string
	if len(r.GetSettings()) > 0 {
		upd = map[string][]string{}
		for k, s := range r.GetSettings() {
			upd[k] = s.GetValue()
		}
	}
	st, err := v.s.UpdateTraceSettings(r.GetModelName(), upd)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &inference.TraceSettingResponse{Settings: map[string]*inference.TraceSettingResponse_SettingValue{}}
	for k, vals := range st {
		out.Settings[k] = &inference.TraceSettingResponse_SettingValue{Value: vals}
	}
	return out, nil
}

// LogSettings updates and returns the log settings.
func (v *Service) LogSettings(_ context.Context, r *inference.LogSettingsRequest) (*inference.LogSettingsResponse, error) {
	var upd map[string]any
	if len(r.GetSettings()) > 0 {
		upd = map[string]any{}
		for k, s := range r.GetSettings() {
			switch c := s.GetParameterChoice().(type) {
			case *inference.LogSettingsRequest_SettingValue_BoolParam:
				upd[k] = c.BoolParam
			case *inference.LogSettingsRequest_SettingValue_Uint32Param:
				upd[k] = c.Uint32Param
			case *inference.LogSettingsRequest_SettingValue_StringParam:
				upd[k] = c.StringParam
			default:
				return nil, toStatus(fmt.Errorf("%w: log setting %s has no value", serve.ErrInvalid, k))
			}
		}
	}
	st, err := v.s.UpdateLogSettings(upd)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &inference.LogSettingsResponse{Settings: map[string]*inference.LogSettingsResponse_SettingValue{}}
	for k, val := range st.Map() {
		sv := &inference.LogSettingsResponse_SettingValue{}
		switch x := val.(type) {
		case bool:
			sv.ParameterChoice = &inference.LogSettingsResponse_SettingValue_BoolParam{BoolParam: x}
		case uint32:
			sv.ParameterChoice = &inference.LogSettingsResponse_SettingValue_Uint32Param{Uint32Param: x}
		case string:
			sv.ParameterChoice = &inference.LogSettingsResponse_SettingValue_StringParam{StringParam: x}
		}
		out.Settings[k] = sv
	}
	return out, nil
}
