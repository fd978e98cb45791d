package sockecs

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
)

// fakeES is an Elasticsearch _bulk endpoint that checks a body as
// Elasticsearch does: the content type, the final newline, action lines
// paired with their documents, and what data streams require (create
// only, an @timestamp, data_stream.* fields that match the stream's name).
// It answers as Elasticsearch answers.
type fakeES struct {
	mu   sync.Mutex
	docs map[string][]map[string]any // stored documents by index
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		b, _ := codec.Marshal(v)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(b)
	}
	fail := func(status int, typ, reason string) {
		reply(status, map[string]any{
			"error":  map[string]any{"root_cause": []any{map[string]any{"type": typ, "reason": reason}}, "type": typ, "reason": reason},
			"status": status,
		})
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		fail(405, "method_not_allowed", "Incorrect HTTP method for uri ["+r.URL.Path+"] and method ["+r.Method+"]")
		return
	}
	urlIndex, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "_bulk")
	if !ok {
		fail(400, "illegal_argument_exception", "no handler for "+r.URL.Path)
		return
	}
	urlIndex = strings.TrimSuffix(urlIndex, "/")
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-ndjson" && ct != "application/json" {
		fail(406, "content_type_not_supported", "Content-Type header ["+r.Header.Get("Content-Type")+"] is not supported")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(400, "parse_exception", err.Error())
		return
	}
	if len(body) == 0 {
		fail(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
		return
	}
	if body[len(body)-1] != '\n' {
		fail(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
		return
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	var items []any
	errors := false
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.docs == nil {
		f.docs = map[string][]map[string]any{}
	}
	for i := 0; i < len(lines); i++ {
		var action map[string]map[string]any
		if err := codec.Unmarshal([]byte(lines[i]), &action); err != nil || len(action) != 1 {
			fail(400, "illegal_argument_exception", fmt.Sprintf("Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT but found [%s]", i+1, lines[i]))
			return
		}
		var op string
		var meta map[string]any
		for k, v := range action {
			op, meta = k, v
		}
		switch op {
		case "create", "index", "update", "delete":
		default:
			fail(400, "illegal_argument_exception", fmt.Sprintf("Malformed action/metadata line [%d], expected one of [create, delete, index, update] but found [%s]", i+1, op))
			return
		}
		index, _ := meta["_index"].(string)
		if index == "" {
			index = urlIndex
		}
		if index == "" {
			fail(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
			return
		}
		if op == "delete" {
			items = append(items, map[string]any{op: map[string]any{"_index": index, "status": 404, "result": "not_found"}})
			continue
		}
		i++
		if i == len(lines) {
			fail(400, "illegal_argument_exception", fmt.Sprintf("Validation Failed: 1: source is missing for the action at line [%d];", i))
			return
		}
		var doc map[string]any
		if err := codec.Unmarshal([]byte(lines[i]), &doc); err != nil || doc == nil {
			errors = true
			items = append(items, itemError(op, index, 400, "document_parsing_exception", fmt.Sprintf("[1:1] failed to parse: line [%d] is not a JSON object", i+1)))
			continue
		}
		if problem := dataStreamProblem(op, index, doc); problem != "" {
			errors = true
			items = append(items, itemError(op, index, 400, "illegal_argument_exception", problem))
			continue
		}
		f.docs[index] = append(f.docs[index], doc)
		n := len(f.docs[index])
		items = append(items, map[string]any{op: map[string]any{
			"_index": backingIndex(index), "_id": fmt.Sprintf("doc-%d", n), "_version": 1,
			"result": "created", "_shards": map[string]any{"total": 1, "successful": 1, "failed": 0},
			"_seq_no": n - 1, "_primary_term": 1, "status": 201,
		}})
	}
	reply(200, map[string]any{"errors": errors, "took": 3, "items": items})
}

func itemError(op, index string, status int, typ, reason string) map[string]any {
	return map[string]any{op: map[string]any{"_index": backingIndex(index), "status": status, "error": map[string]any{"type": typ, "reason": reason}}}
}

// isDataStream tells the names that Elasticsearch's built-in index
// templates (logs-*-*, metrics-*-*, …) turn into data streams.
func isDataStream(index string) (typ, dataset, namespace string, ok bool) {
	parts := strings.Split(index, "-")
	if len(parts) != 3 {
		return "", "", "", false
	}
	switch parts[0] {
	case "logs", "metrics", "traces", "synthetics":
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

func backingIndex(index string) string {
	if _, _, _, ok := isDataStream(index); ok {
		return ".ds-" + index + "-2026.11.26-000001"
	}
	return index
}

func dataStreamProblem(op, index string, doc map[string]any) string {
	typ, dataset, namespace, ok := isDataStream(index)
	if !ok {
		return ""
	}
	if op != "create" {
		return "only write ops with an op_type of create are allowed in data streams"
	}
	ts, ok := doc["@timestamp"].(string)
	if !ok {
		return "data stream timestamp field [@timestamp] is missing"
	}
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		return "failed to parse field [@timestamp] of type [date]"
	}
	if ds, ok := doc["data_stream"].(map[string]any); ok {
		for k, want := range map[string]string{"type": typ, "dataset": dataset, "namespace": namespace} {
			if got, present := ds[k]; present && got != want {
				return fmt.Sprintf("[constant_keyword] field [data_stream.%s] only accepts values that are equal to the value defined in the mappings [%s], but got [%v]", k, want, got)
			}
		}
	}
	return ""
}

type bulkResponse struct {
	Errors bool                        `json:"errors"`
	Items  []map[string]map[string]any `json:"items"`
	Error  map[string]any              `json:"error"`
}

func postBulk(t *testing.T, url string, body []byte) (int, bulkResponse) {
	t.Helper()
	resp, err := http.Post(url+"/_bulk", "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var br bulkResponse
	if err := codec.Unmarshal(raw, &br); err != nil {
		t.Fatalf("response %s: %v", raw, err)
	}
	return resp.StatusCode, br
}

// A --bulk body is accepted whole by an endpoint that checks it as
// Elasticsearch does, into the data stream and into a plain index.
func TestBulkAccepted(t *testing.T) {
	es := &fakeES{}
	srv := httptest.NewServer(es)
	t.Cleanup(srv.Close)
	in := readFile(t, "testdata/input.ndjson")
	for _, args := range [][]string{
		{"--bulk"},
		{"--bulk", "--strict-ecs"},
		{"--bulk", "--index", "logs-sockets-prod"},
		{"--bulk", "--index", "sockets"},
	} {
		body, _, err := run(t, fixedEnv, args, in)
		if err != nil {
			t.Fatal(err)
		}
		status, resp := postBulk(t, srv.URL, []byte(body))
		if status != 200 || resp.Errors || len(resp.Items) != inputDocs {
			t.Errorf("%v: status %d, errors %v, %d items: %+v", args, status, resp.Errors, len(resp.Items), resp)
			continue
		}
		for _, item := range resp.Items {
			if c, ok := item["create"]; !ok || c["status"] != float64(201) {
				t.Errorf("%v: item %v", args, item)
			}
		}
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	for index, want := range map[string]int{"metrics-system.socket-default": 2 * inputDocs, "logs-sockets-prod": inputDocs, "sockets": inputDocs} {
		if got := len(es.docs[index]); got != want {
			t.Errorf("%s holds %d documents, want %d", index, got, want)
		}
	}
}

// The fake endpoint rejects what Elasticsearch rejects, so that its
// acceptance above means something.
func TestFakeESRejects(t *testing.T) {
	srv := httptest.NewServer(&fakeES{})
	t.Cleanup(srv.Close)
	doc := `{"@timestamp":"2026-11-26T04:30:00.123Z"}`
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantErrors bool
	}{
		{"good", `{"create":{"_index":"metrics-a-b"}}` + "\n" + doc + "\n", 200, false},
		{"no final newline", `{"create":{"_index":"metrics-a-b"}}` + "\n" + doc, 400, false},
		{"document without action", doc + "\n", 400, false},
		{"action without document", `{"create":{"_index":"metrics-a-b"}}` + "\n", 400, false},
		{"index op on a data stream", `{"index":{"_index":"metrics-a-b"}}` + "\n" + doc + "\n", 200, true},
		{"no @timestamp in a data stream", `{"create":{"_index":"metrics-a-b"}}` + "\n{}\n", 200, true},
		{"data_stream mismatch", `{"create":{"_index":"metrics-a-b"}}` + "\n" + `{"@timestamp":"2026-11-26T04:30:00Z","data_stream":{"namespace":"c"}}` + "\n", 200, true},
		{"no index", `{"create":{}}` + "\n" + doc + "\n", 400, false},
	}
	for _, tt := range tests {
		status, resp := postBulk(t, srv.URL, []byte(tt.body))
		if status != tt.wantStatus || resp.Errors != tt.wantErrors {
			t.Errorf("%s: status %d errors %v, want %d %v: %+v", tt.name, status, resp.Errors, tt.wantStatus, tt.wantErrors, resp)
		}
	}
}
