// Package ec2test is an in-process EC2 server for tests: it speaks enough of
// the EC2 Query protocol (form-encoded requests, XML responses, SigV4
// credential scope for the region) for aws-sdk-go-v2's service/ec2 client
// to import snapshots, register, copy, tag, publish and delete images
// against it, with the state and the errors EC2 has for those calls.
//
// One Server serves every region; it takes the region from the request's
// SigV4 credential scope and keeps state per region. Faults can be injected
// (throttling, error codes, failed imports and copies, lost responses, held
// calls) and the state inspected, so a test can prove that an activity did a
// side effect exactly once or cleaned up everything it made.
//
// The server is not a mock: it validates parameters, enforces name
// uniqueness and ClientToken idempotency, rejects filters EC2 does not
// know, refuses to delete a snapshot an image uses, and lets import tasks
// and copies progress only as they are polled.
package ec2test

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// DefaultAccountID owns every resource the server creates, unless
// Options.AccountID says otherwise.
const DefaultAccountID = "123456789012"

// AccessKeyID and SecretAccessKey are the fake credentials of Client. The
// server does not check signatures; it reads the region from the scope.
const (
	AccessKeyID     = "AKIDEC2TEST"
	SecretAccessKey = "ec2test-secret"
)

// DefaultRegions are the regions enabled unless Options.Regions or
// SetRegions say otherwise: the regions AWS enables in every account.
var DefaultRegions = []string{
	"ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-southeast-1", "ap-southeast-2",
	"ca-central-1", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3",
	"sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
}

// optInRegions are known but not enabled unless set: DescribeRegions with
// AllRegions lists them as not-opted-in.
var optInRegions = []string{"af-south-1", "ap-east-1", "eu-south-1", "me-south-1"}

// Kinds of resources, for Created.
const (
	KindImportTask = "import-snapshot-task"
	KindSnapshot   = "snapshot"
	KindImage      = "image"
)

// Options configure a Server. The zero value is a server whose imports and
// copies finish on the first poll.
type Options struct {
	// ImportPolls is how many DescribeImportSnapshotTasks answers show an
	// import task active before one shows it completed (or failed).
	ImportPolls int
	// CopyPolls is how many DescribeImages answers show a copied image
	// pending before one shows it available (or failed).
	CopyPolls int
	// RegisterPolls is the same for images made by RegisterImage.
	RegisterPolls int
	// AccountID owns what the server creates. Optional: DefaultAccountID.
	AccountID string
	// Regions are the enabled regions. Optional: DefaultRegions.
	Regions []string
}

// Image is an AMI as the server holds it.
type Image struct {
	ID, Region, Name, Description string
	OwnerID                       string
	// State is pending, available, failed, … as EC2 names them.
	State       string
	StateReason string
	Public      bool
	Tags        map[string]string
	// SnapshotID is the snapshot of the root device.
	SnapshotID         string
	BlockDevices       []BlockDevice
	Architecture       string
	BootMode           string
	EnaSupport         bool
	RootDeviceName     string
	VirtualizationType string
	// SourceImageID and SourceRegion are set on copies.
	SourceImageID, SourceRegion string
}

// BlockDevice is one block device mapping of an image.
type BlockDevice struct {
	DeviceName          string
	SnapshotID          string
	VolumeType          string
	VolumeSize          int
	DeleteOnTermination bool
}

// Snapshot is an EBS snapshot as the server holds it.
type Snapshot struct {
	ID, Region, Description, OwnerID string
	// State is pending, completed or error.
	State      string
	VolumeSize int
	Tags       map[string]string
}

// ImportTask is a snapshot import task as the server holds it.
type ImportTask struct {
	ID, Region, Description string
	Bucket, Key, Format     string
	// Status is active, completed, deleting or deleted.
	Status, StatusMessage string
	SnapshotID            string
	Tags                  map[string]string
}

// Server is a running EC2-compatible server. Its methods are safe for
// concurrent use.
type Server struct {
	hs   *httptest.Server
	opts Options

	mu       sync.Mutex
	seq      uint64
	reqSeq   uint64
	enabled  []string
	regions  map[string]*region
	calls    map[string]int
	created  map[string]int
	throttle int
	fails    map[string]*failure
	lose     map[string]int
	holds    map[string]chan struct{}
	badTasks []string // FailImport messages, for the next import tasks
	badCopy  []string // FailCopy messages, for the next copies
	closing  chan struct{}
	closed   bool
}

type failure struct {
	n    int
	code string
}

// New starts a server on a free loopback port. Close it when done.
func New(opts Options) *Server {
	if opts.AccountID == "" {
		opts.AccountID = DefaultAccountID
	}
	s := &Server{
		opts:    opts,
		regions: map[string]*region{},
		calls:   map[string]int{},
		created: map[string]int{},
		fails:   map[string]*failure{},
		lose:    map[string]int{},
		holds:   map[string]chan struct{}{},
		closing: make(chan struct{}),
	}
	s.enabled = slices.Clone(opts.Regions)
	if s.enabled == nil {
		s.enabled = slices.Clone(DefaultRegions)
	}
	s.hs = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the server's base URL, for ec2.Options.BaseEndpoint.
func (s *Server) URL() string { return s.hs.URL }

// Close releases held calls and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.hs.Close()
}

// Client returns an EC2 client for region that talks to the server with
// fake static credentials and the SDK's default retryer. Its signature fits
// publish.NewAWS.
func (s *Server) Client(region string) *ec2.Client { return s.ClientWithOptions(region) }

// ClientWithOptions is Client with optFns adjusting the client's options (a
// test may set a faster retryer, or none).
func (s *Server) ClientWithOptions(region string, optFns ...func(*ec2.Options)) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       region,
		BaseEndpoint: aws.String(s.URL()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "ec2test"}, nil
		}),
	}, optFns...)
}

// SetRegions sets the enabled regions. Requests signed for another region
// fail with AuthFailure, as they do for a region not enabled in an account.
func (s *Server) SetRegions(regions []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enabled = slices.Clone(regions)
}

// Throttle makes the next n requests, of any action, fail with HTTP 503
// RequestLimitExceeded without doing anything.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// Fail makes the next n calls of action (such as "CopyImage", or "*" for
// any action) fail with the error code, without doing anything. The HTTP
// status is EC2's for the code: 401 AuthFailure, 403 UnauthorizedOperation,
// 500 InternalError, 503 RequestLimitExceeded and Unavailable, otherwise
// 400.
func (s *Server) Fail(action string, n int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[action] = &failure{n: n, code: code}
}

// FailImport makes the next import task that is created end in status
// deleted with the status message, as EC2 reports a failed import.
func (s *Server) FailImport(message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badTasks = append(s.badTasks, message)
}

// FailCopy makes the next image copy that is created end in state failed
// with the message as its state reason.
func (s *Server) FailCopy(message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badCopy = append(s.badCopy, message)
}

// LoseResponse makes the next n successful calls of action do their work
// and then answer HTTP 500 InternalError, as if the connection broke after
// EC2 acted: a retry must find the earlier result instead of acting twice.
// A call that fails on its own returns its error and does not count.
func (s *Server) LoseResponse(action string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose[action] = n
}

// Hold blocks every call of action (after Calls counts it, before it acts)
// until release is called or the server closes. A held call whose client
// has gone away still acts once released, as EC2 does with a request it
// received: this models a worker that crashed with a request in flight.
func (s *Server) Hold(action string) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.holds[action] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.holds[action] == ch {
				delete(s.holds, action)
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Calls returns how many requests of action the server received, including
// throttled, failed and held ones.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// Created returns how many resources of a kind (KindImportTask,
// KindSnapshot, KindImage) the server's API calls created, in all regions,
// including ones deleted since.
func (s *Server) Created(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created[kind]
}

// Images returns the images registered in region (deregistered ones are
// gone), ordered by ID.
func (s *Server) Images(region string) []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.region(region)
	var out []Image
	for _, id := range sortedKeys(r.images) {
		out = append(out, r.images[id].export(region))
	}
	return out
}

// Snapshots returns the snapshots in region, ordered by ID.
func (s *Server) Snapshots(region string) []Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.region(region)
	var out []Snapshot
	for _, id := range sortedKeys(r.snapshots) {
		sn := r.snapshots[id]
		out = append(out, Snapshot{ID: sn.id, Region: region, Description: sn.description, OwnerID: sn.owner,
			State: sn.state, VolumeSize: sn.size, Tags: clone(sn.tags)})
	}
	return out
}

// ImportTasks returns the import tasks of region, ordered by ID.
func (s *Server) ImportTasks(region string) []ImportTask {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.region(region)
	var out []ImportTask
	for _, id := range sortedKeys(r.tasks) {
		t := r.tasks[id]
		out = append(out, ImportTask{ID: t.id, Region: region, Description: t.description, Bucket: t.bucket, Key: t.key,
			Format: t.format, Status: t.status, StatusMessage: t.statusMessage, SnapshotID: t.snapshotID, Tags: clone(t.tags)})
	}
	return out
}

// AddImage puts an image into region as if someone registered it: a test
// seeds a conflicting name, or another account's (OwnerID) public image.
// Empty fields get EC2's defaults (state available, owner the server's
// account); the ID is assigned and returned.
func (s *Server) AddImage(region string, img Image) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := &image{
		id: s.newID("ami"), name: img.Name, description: img.Description, owner: img.OwnerID, state: img.State,
		stateReason: img.StateReason, public: img.Public, tags: clone(img.Tags), arch: img.Architecture,
		bootMode: img.BootMode, ena: img.EnaSupport, rootDevice: img.RootDeviceName, virt: img.VirtualizationType,
		created: time.Now(),
	}
	if im.owner == "" {
		im.owner = s.opts.AccountID
	}
	if im.state == "" {
		im.state = "available"
	}
	if im.arch == "" {
		im.arch = "x86_64"
	}
	if im.virt == "" {
		im.virt = "hvm"
	}
	if im.tags == nil {
		im.tags = map[string]string{}
	}
	for _, b := range img.BlockDevices {
		im.devices = append(im.devices, blockDevice(b))
	}
	if len(im.devices) == 0 && img.SnapshotID != "" {
		im.devices = []blockDevice{{DeviceName: "/dev/xvda", SnapshotID: img.SnapshotID, VolumeType: "gp3", DeleteOnTermination: true}}
	}
	s.region(region).images[im.id] = im
	return im.id
}

// SetImageState changes an image's state (and state reason), as EC2 does
// when a copy fails or an image is disabled.
func (s *Server) SetImageState(region, imageID, state, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.region(region).images[imageID]
	if im == nil {
		return fmt.Errorf("ec2test: no image %s in %s", imageID, region)
	}
	im.state, im.stateReason = state, reason
	return nil
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// apiError is an EC2 error response.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func statusFor(code string) int {
	switch code {
	case "AuthFailure", "OptInRequired":
		return http.StatusUnauthorized
	case "UnauthorizedOperation", "Blocked":
		return http.StatusForbidden
	case "InternalError", "InternalFailure":
		return http.StatusInternalServerError
	case "RequestLimitExceeded", "Unavailable", "ServiceUnavailable":
		return http.StatusServiceUnavailable
	case "DryRunOperation":
		return http.StatusPreconditionFailed
	}
	return http.StatusBadRequest
}

func invalidValue(name, value string) *apiError {
	return &apiError{Code: "InvalidParameterValue", Message: fmt.Sprintf("Value (%s) for parameter %s is invalid.", value, name)}
}

func missing(name string) *apiError {
	return &apiError{Code: "MissingParameter", Message: fmt.Sprintf("The request must contain the parameter %s", name)}
}

type handler func(s *Server, r *region, p params) (any, *apiError)

var handlers = map[string]handler{
	"ImportSnapshot":              (*Server).importSnapshot,
	"DescribeImportSnapshotTasks": (*Server).describeImportSnapshotTasks,
	"CancelImportTask":            (*Server).cancelImportTask,
	"CreateTags":                  (*Server).createTags,
	"RegisterImage":               (*Server).registerImage,
	"DescribeImages":              (*Server).describeImages,
	"CopyImage":                   (*Server).copyImage,
	"ModifyImageAttribute":        (*Server).modifyImageAttribute,
	"DeregisterImage":             (*Server).deregisterImage,
	"DescribeSnapshots":           (*Server).describeSnapshots,
	"DeleteSnapshot":              (*Server).deleteSnapshot,
	"DescribeRegions":             (*Server).describeRegions,
}

func (s *Server) serveHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.writeError(w, &apiError{Code: "MalformedQueryString", Message: err.Error()})
		return
	}
	for k, v := range req.URL.Query() {
		form[k] = append(form[k], v...)
	}
	p := params(form)
	action := p.get("Action")

	s.mu.Lock()
	s.calls[action]++
	hold := s.holds[action]
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-s.closing:
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.throttle > 0 {
		s.throttle--
		s.writeError(w, &apiError{Code: "RequestLimitExceeded", Message: "Request limit exceeded."})
		return
	}
	for _, key := range []string{action, "*"} {
		if f := s.fails[key]; f != nil && f.n > 0 {
			f.n--
			s.writeError(w, &apiError{Code: f.code, Message: "ec2test: injected " + f.code + " for " + action})
			return
		}
	}
	h, ok := handlers[action]
	if !ok {
		s.writeError(w, &apiError{Code: "InvalidAction", Message: fmt.Sprintf("The action %q is not valid for this web service.", action)})
		return
	}
	regionName, ok := scopeRegion(req.Header.Get("Authorization"))
	if !ok {
		s.writeError(w, &apiError{Code: "AuthFailure", Message: "AWS was not able to validate the provided access credentials (no SigV4 credential scope)."})
		return
	}
	if !slices.Contains(s.enabled, regionName) {
		s.writeError(w, &apiError{Code: "AuthFailure", Message: fmt.Sprintf("AWS was not able to validate the provided access credentials (region %s is not enabled).", regionName)})
		return
	}
	if dry, _ := p.boolean("DryRun"); dry {
		s.writeError(w, &apiError{Code: "DryRunOperation", Message: "Request would have succeeded, but DryRun flag is set."})
		return
	}
	resp, apiErr := h(s, s.region(regionName), p)
	if apiErr != nil {
		s.writeError(w, apiErr)
		return
	}
	if s.lose[action] > 0 {
		s.lose[action]--
		s.writeError(w, &apiError{Code: "InternalError", Message: "ec2test: response lost after " + action + " acted"})
		return
	}
	b, err := marshal(action, s.requestID(), resp)
	if err != nil {
		s.writeError(w, &apiError{Code: "InternalError", Message: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Write([]byte(xml.Header))
	w.Write(b)
}

// writeError writes EC2's error document. Callers hold s.mu.
func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	status := e.Status
	if status == 0 {
		status = statusFor(e.Code)
	}
	b, _ := xml.Marshal(xmlError{Code: e.Code, Message: e.Message, RequestID: s.requestID()})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	w.Write([]byte(xml.Header))
	w.Write(b)
}

func (s *Server) requestID() string {
	s.reqSeq++
	return fmt.Sprintf("ec2test-%08x-0000-4000-8000-%012x", s.reqSeq, s.reqSeq)
}

// scopeRegion reads the region from "AWS4-HMAC-SHA256
// Credential=AKID/20250101/eu-central-1/ec2/aws4_request, …".
func scopeRegion(auth string) (string, bool) {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", false
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 || parts[2] == "" || parts[3] != "ec2" {
		return "", false
	}
	return parts[2], true
}

// newID returns a fresh resource ID, ordered by creation. Callers hold s.mu.
func (s *Server) newID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%017x", prefix, s.seq)
}

// region returns a region's state. Callers hold s.mu.
func (s *Server) region(name string) *region {
	r := s.regions[name]
	if r == nil {
		r = &region{
			name:      name,
			tasks:     map[string]*importTask{},
			snapshots: map[string]*snapshot{},
			images:    map[string]*image{},
			tokens:    map[string]token{},
		}
		s.regions[name] = r
	}
	return r
}

// knownRegions is every region DescribeRegions can name: the enabled ones
// in the order SetRegions gave (EC2 promises no order), then the others.
// Callers hold s.mu.
func (s *Server) knownRegions() []string {
	others := slices.Concat(DefaultRegions, optInRegions)
	sort.Strings(others)
	out := slices.Clone(s.enabled)
	for _, r := range slices.Compact(others) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}
