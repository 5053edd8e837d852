// Package serve is kiln's inference server core: it loads models from a
// Triton-style repository (package repository), runs each model version
// behind a dynamic batcher (package scheduler), and answers inference,
// health, metadata, statistics and repository requests. The protocol
// front ends (HTTP and WebSocket in package httpapi, gRPC in package grpcapi)
// call Server's methods and map its sentinel errors to status codes;
// package metrics exports Prometheus metrics under Triton's names.
//
// Serving the bundled example model as "tinycnn" (HTTP on 8000, gRPC on
// 8001, metrics on 8002):
//
//	kiln serve
//	curl localhost:8000/v2/health/ready
//	curl localhost:8000/v2/models/tinycnn
//	curl -X POST localhost:8000/v2/models/tinycnn/infer -d '{"inputs":[{"name":"image",
//	    "shape":[1,3,32,32],"datatype":"FP32","data":[0.5, ... 3072 values ...]}]}'
//	grpcurl -plaintext -import-path api/inference -proto grpc_service.proto \
//	    -d '{"name":"tinycnn"}' localhost:8001 inference.GRPCInferenceService/ModelReady
//	curl localhost:8002/metrics
//
// A repository, in Triton's layout:
//
//	kiln serve --model-repository DIR [--model-control-mode none|poll|explicit]
//
//	DIR/resnet/config.pbtxt      optional; without it the model's own inputs and
//	                             outputs define it (max_batch_size 8 when every
//	                             input's first dimension is symbolic, else 0)
//	DIR/resnet/1/model.onnx
//
// A config that turns on dynamic batching with two priority levels:
//
//	max_batch_size: 8
//	instance_group [ { count: 2 kind: KIND_CPU } ]
//	dynamic_batching {
//	  preferred_batch_size: [ 4, 8 ]
//	  max_queue_delay_microseconds: 500
//	  priority_levels: 2
//	  default_priority_level: 2
//	  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 100000
//	                         allow_timeout_override: true max_queue_size: 64 }
//	}
//
// Instances on GPUs (Triton's instance_group): a KIND_GPU group runs count
// instances (execution contexts) on each GPU of its gpus list, or on every
// visible GPU without one (CUDA_VISIBLE_DEVICES decides which, numbered
// from 0; the completed config lists them). Each GPU gets its own engine,
// built or loaded through the plan cache keyed by that GPU's fingerprint:
// identical GPUs share one plan file, a GPU that differs has its own. The
// scheduler's batches go to whichever instance is free, on any GPU. Other
// kinds run on the CPU. A gpus entry that is not a visible GPU fails the
// load, naming the field. The statistics list each instance with its
// device, GPU UUID and batches (HTTP "instances", kiln's extension):
//
//	max_batch_size: 32
//	instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] } ]   # 4 instances
//	parameters { key: "precision" value: { string_value: "fp16" } }
//
// A latency objective instead of a fixed queue delay (the SLO batcher, see
// package scheduler; requests within it and not are counted), and a sample
// of the requests recorded under kiln serve --record-dir for INT8
// calibration, with a background INT8 rebuild switched to when it agrees
// with the served engine (ParamSLO, ParamRecord, ParamINT8RebuildAfter):
//
//	max_batch_size: 32
//	parameters { key: "slo_p99_ms" value: { string_value: "10" } }
//	parameters { key: "record_requests" value: { string_value: "0.05" } }
//	parameters { key: "int8_rebuild_after" value: { string_value: "200" } }
//
// Warmup (Triton's model_warmup): each sample runs count times on every
// instance of every version, all instances at once, before the version
// serves; inputs are zero_data, random_data (floats in [0,1), integers 0 or
// 1) or input_data_file (raw little-endian values in <model>/warmup/):
//
//	model_warmup [ {
//	  name: "zeros" batch_size: 4 count: 2
//	  inputs { key: "image" value { data_type: TYPE_FP32 dims: [ 3, 32, 32 ] zero_data: true } }
//	} ]
//
// Live and ready: the server is live while the process runs. A model on its
// first load is LOADING (not ready, and neither is the server) until every
// version has loaded and warmed up; it is then READY. A model whose load or
// warmup fails is UNAVAILABLE with the error in the repository index, and
// the server is not ready. A reload (poll mode, or the repository API)
// loads and warms the new versions beside the ones serving, which keep
// serving (model and server stay ready) until the new ones take over; a
// failed reload keeps the old versions and shows "reload failed: ..." as
// the reason in the index.
//
// Loading the repository at start (LoadAll) happens while the ports are
// open: the server is live but not ready, and the models not yet loaded
// show as LOADING; its context (SIGTERM) stops it between models, inside a
// model's build (Options.ContextLoader) and during warmup.
//
// Unloading: an unloaded (or replaced) model leaves the index at once, and
// requests to it get not found (or not ready while the server shuts down);
// its queued requests finish, or fail when the caller gives up first
// (Unload's or Shutdown's context). Its files, the weights a running batch
// reads, are closed only after every instance has finished its last run,
// in the background when the caller gave up.
//
// Checking requests: besides the config's inputs, types and dims, each
// request is checked before it is queued, so that it never reaches a batch
// it would fail: its data must fill its shape; its shapes must fit the
// engine's optimization profile (the batch range 1..max_batch_size and the
// dims parameter's ranges, others 1..512); an engine without a profile (a
// model served without batching, or a graph served as it is) bounds every
// symbolic dimension by the dims parameter's range or else 0..4096
// (repository.DefaultMaxDim), so a 16000x16000 image is refused before any
// work; and integer inputs the model uses as indices into a constant table
// (token ids into an embedding, through Gather) must be within the table.
// All are 400 / INVALID_ARGUMENT, as are errors found only by running that
// the inputs cause (an index out of range, a shape a kernel cannot take,
// such as an image whose size is not a multiple of the network's stride).
// When a batch of several requests fails, each of its requests runs again
// alone: only the faulty one fails, and no error quotes another request's
// data.
//
// Metrics, besides Triton's request, count and duration counters:
// histograms of request latency, queue time, batch size and model load time
// (warmup included); kiln_inference_exec_context_switch_count{model,version},
// the executions that ran on another instance (execution context) than the
// model version's previous execution (0 with one instance; near the
// execution count when load spreads over every instance, which on a GPU
// means each batch finds other buffers and streams than the last); and, on
// machines with an NVIDIA driver, nv_gpu_utilization (0 to 1),
// nv_gpu_memory_total_bytes and nv_gpu_memory_used_bytes by gpu_uuid, read
// through NVML at each scrape (kiln serve --allow-gpu-metrics=false turns
// them off). Without NVML the GPU metrics are absent and the log says why,
// once. nv_inference_compute_input/infer/output_duration_us split a batch's
// execution into preparing its inputs, running the model, and splitting its
// outputs. kiln_request_duration_us{model} counts each inference request's
// whole time in the server, from its arrival at the HTTP, gRPC or
// WebSocket edge to its response written (Server.Served; its rate is the
// mean number of requests in flight, which the Helm chart's autoscaler
// tracks). gRPC health checking follows readiness.
//
// WebSocket streaming: /v2/models/{m}/stream takes one request per message
// (JSON text, or binary: 4-byte little-endian header length, JSON header,
// raw tensors as in the binary extension) and answers each in order as soon
// as it is ready; api.DialWebSocket is a Go client. examples/detect streams
// frames to yolo_tiny extended with server-side non-maximum suppression and
// prints the boxes as they arrive (see its README). A closed stream's
// queued requests leave the queue at once, as do those of a disconnected
// HTTP client and of a cancelled gRPC call or stream.
//
// Triton client parity: a model's config is the config.pbtxt as Triton's
// ModelConfig message (every field Triton knows, those kiln does not act on
// included, kiln's defaults and the model's inputs and outputs filled in),
// the same message over gRPC (ModelConfig) and HTTP (protojson, 64-bit
// integers as numbers). The classification extension: an output asked for
// with the parameter "classification" (or "class_count") N comes back as
// BYTES "value:index[:label]" strings of its top N classes, labels from the
// output's label_filename. An explicit load takes a "config" parameter (a
// JSON model config, checked as a config.pbtxt is) and "file:<path>"
// parameters (the model folder's files; base64 over HTTP, bytes over
// gRPC; they cannot leave the folder). Statistics have batch_stats, the
// runs by batch size. gRPC ModelReady answers ready=false for a model that
// is not loaded. HTTP request bodies may be gzip or deflate
// (Content-Encoding; the body limit applies to the decompressed size) and
// responses of 1 KiB or more are compressed for a client that accepts
// either; gRPC accepts gzip, its receive limit bounding the decompressed
// message.
//
// Pipelines: a model with platform "ensemble" runs the steps of its
// ensemble_scheduling (Triton's: model_name, model_version -1 for the
// newest, input_map from the step model's input to an ensemble tensor,
// output_map from its output to an ensemble tensor). A request runs each
// step as soon as the tensors it reads exist, steps whose inputs are ready
// at once, each through its model's own scheduler (batcher, instances,
// statistics); tensors pass from step to step without a copy. A failing
// step fails the request with "ensemble E: step[i] (model "M"): ..." and
// the step's status code. At load, the steps' models that are not loaded
// are loaded (in every model control mode, so an explicit load of the
// ensemble loads its steps; LoadAll loads each model once), and a step
// model missing or failing to load, a tensor nothing produces or two steps
// produce, a cycle, an ensemble input no step reads or output no step
// makes, a step input or output the model lacks, types that disagree, or
// a step model's max_batch_size below the ensemble's is a load error
// naming the field (ensemble_scheduling.step[1].input_map).
// The ensemble is ready only while its step models are: unloading one
// makes it not ready (503) until it is loaded again. An ensemble runs at
// most EnsembleConcurrency requests at once. An ensemble output without a
// label_filename takes the labels of the step output making it, so the
// classification extension works on the ensemble.
//
// Image preprocessing: a model with platform "kiln_image" (no model file;
// an empty version folder) takes one TYPE_STRING input of dims [ 1 ],
// encoded JPEG or PNG images (one per batch item), and gives one TYPE_FP32
// output of dims [ 3, H, W ] (parameter layout "NHWC": [ H, W, 3 ]): each
// image decoded, resized to HxW (bilinear), divided by scale (default 255),
// then normalized per channel, (x - mean) / std, channels in color_order
// (RGB or BGR). Parameters layout, color_order, scale, mean and std (three
// comma-separated values) are string_value parameters. An image that is
// not JPEG or PNG, is corrupt, or has more than MaxImagePixels pixels is a
// 400 naming the input, refused before it joins a batch.
//
//	name: "preprocess"
//	platform: "kiln_image"
//	max_batch_size: 8
//	input [ { name: "image_bytes" data_type: TYPE_STRING dims: [ 1 ] } ]
//	output [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
//	parameters { key: "mean" value { string_value: "0.485,0.456,0.406" } }
//	parameters { key: "std" value { string_value: "0.229,0.224,0.225" } }
//
// examples/pipeline serves an ensemble of such a preprocessor and a
// classifier (see its README).
//
// Tokenizers: a model with platform "kiln_tokenizer" runs the HuggingFace
// tokenizer.json in its version folder, else in its model folder
// (parameter tokenizer_file names another file): WordPiece (BERT) or
// byte-level BPE (GPT-2, RoBERTa), see package serve/tokenizer. With one TYPE_STRING input of
// dims [ 1 ] (UTF-8 text, one per batch item), or two for pairs of texts
// (a cross-encoder's query and passage), its outputs are any of input_ids,
// attention_mask and token_type_ids, TYPE_INT64 or TYPE_INT32 of dims
// [ -1 ], padded to the batch's longest encoding; parameters max_length
// (truncation, special tokens counted), truncation (longest_first,
// only_first, only_second), padding ("max_length": every encoding padded
// to max_length, outputs of dims [ max_length ]) and add_special_tokens
// ("false" leaves out [CLS] and [SEP]). With one TYPE_INT64 or TYPE_INT32
// input of dims [ -1 ] (token ids) and one TYPE_STRING output of dims
// [ 1 ] it decodes ids back into text (skip_special_tokens, default
// "true"). Text that is not UTF-8 or is longer than
// tokenizer.MaxTextBytes, and ids outside the vocabulary, are a 400 naming
// the input; a text's bad bytes are refused before it joins a batch.
//
//	name: "tokenizer"
//	platform: "kiln_tokenizer"
//	max_batch_size: 16
//	input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
//	output [
//	  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
//	  { name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] }
//	]
//	parameters { key: "max_length" value { string_value: "128" } }
//
// testdata/tokenizer holds three such models; examples/rerank serves a
// retrieve-then-rerank search of two ensembles with tokenizers in front
// of an embedding model and a cross-encoder (see its README).
//
// Stateful models: a model whose config has sequence_batching (Triton's)
// takes requests of sequences, the request parameters sequence_id (a
// uint64 or a string), sequence_start and sequence_end (HTTP JSON and
// binary "parameters", WebSocket messages, gRPC InferParameters). A
// sequence's first request needs sequence_start (else 400 "sequence N has
// not started"); a start takes one of the model's slots, instance count
// times max_batch_size of them (direct strategy) or max_candidate_sequences
// (oldest strategy). With every slot taken a new sequence waits for one,
// and is refused with 429 when parameter max_sequence_queue (default 64)
// sequences wait already. sequence_end frees the slot after its request,
// and so does max_sequence_idle_microseconds (default 1 s) without a
// request: the sequence's next request is a 400 saying it was idle and
// was released. The requests of one sequence run one at a time in the
// order they come (a WebSocket stream's in the stream's order; an HTTP
// client sends the next after the answer), each batched with other
// sequences' requests: at most one request of a sequence per batch.
// Batches go when max_queue_delay_microseconds passed, a batch is full, or
// (direct) minimum_slot_utilization of an instance's slots have a request
// or (oldest) a preferred_batch_size is reached. A sequence's state lives
// in the batcher, not in an instance, so any instance runs its next
// request; preserve_ordering is not needed (answers go to their own
// requests) and iterative_sequence is a load error. A request of a
// sequence has batch size 1.
//
// The batcher fills the control inputs (control_input, kinds
// CONTROL_SEQUENCE_START, END, READY with fp32_false_true,
// int32_false_true or bool_false_true, and CORRID with data_type
// TYPE_UINT64, INT64, UINT32, INT32 or STRING) and the implicit state
// (state: input_name, output_name, data_type, dims, initial_state with
// zero_data or a data_file in the model's initial_state folder): a run's
// output_name becomes the sequence's next input_name, starting from zeros
// or the initial state, dropped at the end or idle release (and when the
// model is unloaded or reloaded: its sequences start over). Clients send
// neither; they are not in the metadata's inputs and outputs. Warmup
// samples run as one-request sequences. Server.SequenceStats counts slots,
// active, waiting, started, ended and timed-out sequences, exported as
// kiln_sequence_slots, kiln_sequence_active, kiln_sequence_waiting and
// kiln_sequence_total{outcome="started|ended|timed_out"}. The gateway
// keeps a sequence on one server (sequence_id stickiness).
//
//	name: "accumulate"
//	max_batch_size: 4
//	input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
//	output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
//	sequence_batching {
//	  max_sequence_idle_microseconds: 5000000
//	  direct { max_queue_delay_microseconds: 1000 }
//	  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] } ]
//	  state [ { input_name: "state_in" output_name: "state_out" data_type: TYPE_FP32 dims: [ 1 ] } ]
//	}
//
// Shared memory (Triton's system shared memory extension, package shm): a
// client registers a region of a POSIX shared memory object (a file under
// /dev/shm) by name, key, offset and size, then names it in an input's or
// output's parameters (shared_memory_region, shared_memory_offset,
// shared_memory_byte_size): the input is read from the region (ShmInput),
// the output written into it (InferRequest.OutputShm). Every access is
// checked against the region and the tensor (ErrInvalid); unregistering
// waits for the copies in progress; a region whose object shrank fails the
// request. CUDA shared memory is ErrUnsupported.
//
// Response cache (package cache): a model with response_cache { enable:
// true } answers a request it has answered before (same model load, inputs
// and requested outputs) from an LRU cache bounded by Options.CacheBytes,
// counted as cache_hit and cache_miss in its statistics; sequence models
// never cache. Trace settings (TraceSettings, UpdateTraceSettings) and log
// settings (UpdateLogSettings, package logging) are Triton's; a trace file
// is written only inside the folder given to SetTraceDir.
//
// Status codes: 400 bad input, 404 unknown model or version, 413 body too
// large, 429 queue full (gRPC RESOURCE_EXHAUSTED), 503 not ready, shutting
// down or queue timeout. On SIGTERM the server turns not ready at once,
// refuses new requests (503), lets the queued and running ones finish within
// --exit-timeout, keeps its ports answering 503 for --shutdown-grace, and
// exits 0.
package serve
