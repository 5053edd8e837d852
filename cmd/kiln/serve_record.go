package main

import "flag"

// recordDirFlag adds kiln serve's --record-dir: where the models whose
// config asks for it (parameter record_requests) record a sample of their
// requests, as calibration data for kiln build --int8 --calib-data.
func recordDirFlag(fs *flag.FlagSet) *string {
	return fs.String("record-dir", "", "folder where models with the config parameter record_requests keep a sample of their requests, as `DIR`/MODEL/VERSION/test_data_set_N (kiln build --int8 --calib-data reads it); empty: no recording")
}
