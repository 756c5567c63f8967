package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// store stands in for the storage and log activities: it keeps manifests
// (built by the real storage.BuildManifest) and sets in memory and records
// every call.
type store struct {
	mu        sync.Mutex
	manifests map[string]storage.Manifest
	sets      map[string]storage.ManifestSet
	verified  []string // flavours
	promoted  int      // artifacts copied
	archived  []string // PipelineRuns
	corrupt   string   // a flavour whose artifacts fail Verify
	// release and requirements are the .release and .requirements files'
	// contents Verify returns, by flavour.
	release, requirements map[string]string
	// beforeArchive, if set, runs (unlocked) before an archive answers.
	beforeArchive func(path string) error
	// failSets and failPublished are the numbers of PutManifestSet and
	// SetPublished calls to refuse (permanently, as S3 refuses access).
	failSets, failPublished int
	setCalls                int
}

func newStore() *store {
	return &store{manifests: map[string]storage.Manifest{}, sets: map[string]storage.ManifestSet{},
		release: map[string]string{}, requirements: map[string]string{}}
}

// keyOf is the manifest key of a flavour of request() whose build reported
// no other canonical name.
func keyOf(f flavour.Flavour) string {
	return storage.ManifestKey("", f.Name()+"-1443.3-0123abcd")
}

func (s *store) register(env *testsuite.TestWorkflowEnvironment) {
	reg(env, "FindManifest", func(_ context.Context, in storage.FindManifestRequest) (storage.Found, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		// Found by kiln's flavour name, or by the flavour name of a
		// manifest that Garden Linux's tools wrote (no kiln facts).
		for key, m := range s.manifests {
			if (m.Kiln != nil && m.Kiln.Flavour == in.Flavour) || key == storage.ManifestKey("", in.Flavour+"-"+in.Version+"-"+in.Commit) {
				published := len(m.PublishedImageMetadata) > 0
				return storage.Found{Found: true, Key: key, Manifest: m, Files: m.Files(), Base: strings.TrimPrefix(key, "meta/singles/"),
					Published: published, TestResult: m.Test()}, nil
			}
		}
		return storage.Found{}, nil
	})
	reg(env, "Verify", func(_ context.Context, in storage.VerifyRequest) (storage.VerifyResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in.Flavour == s.corrupt {
			return storage.VerifyResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: artifact rootfs.raw at %s is corrupt: sha256 0000, reported %s", in.Flavour, in.Artifacts[0].Key, in.Artifacts[0].SHA256), storage.ErrTypeArtifactCorrupt, nil)
		}
		s.verified = append(s.verified, in.Flavour)
		return storage.VerifyResult{Artifacts: in.Artifacts, Release: s.release[in.Flavour], Requirements: s.requirements[in.Flavour]}, nil
	})
	reg(env, "Promote", func(_ context.Context, in storage.PromoteRequest) (storage.PromoteResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var res storage.PromoteResult
		for _, art := range in.Artifacts {
			name, suffix := storage.GardenLinuxName(in.Identity.Base, art.Name)
			res.Files = append(res.Files, storage.File{Name: name, Suffix: suffix, Key: storage.GardenLinuxObjectKey("", in.Identity.Base, name), Size: art.Size, SHA256: art.SHA256})
			res.Copied++
		}
		s.promoted += res.Copied
		return res, nil
	})
	reg(env, "PutManifest", func(_ context.Context, in storage.PutManifestRequest) (string, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		key := storage.ManifestKey("", in.Identity.Base)
		if _, ok := s.manifests[key]; !ok {
			s.manifests[key] = storage.BuildManifest(in, storage.LayoutGardenLinux, "releases", key)
		}
		return key, nil
	})
	reg(env, "PutManifestSet", func(_ context.Context, set storage.ManifestSet) (string, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.setCalls++
		if s.failSets > 0 {
			s.failSets--
			return "", temporal.NewNonRetryableApplicationError("put manifest set: AccessDenied", storage.ErrTypeAccessDenied, nil)
		}
		key := storage.ManifestSetKey("", set.Version, set.Commit)
		s.sets[key] = set
		return key, nil
	})
	reg(env, "SetPublished", func(_ context.Context, in storage.SetPublishedRequest) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failPublished > 0 {
			s.failPublished--
			return temporal.NewNonRetryableApplicationError("set published: AccessDenied", storage.ErrTypeAccessDenied, nil)
		}
		m, ok := s.manifests[in.Key]
		if !ok {
			return temporal.NewNonRetryableApplicationError("no manifest "+in.Key, storage.ErrTypeArtifactMissing, nil)
		}
		m.PublishedImageMetadata = in.Images
		s.manifests[in.Key] = m
		return nil
	})
	type archiveIn struct{ Namespace, PipelineRun, Path string }
	type archiveOut struct {
		Logs map[string]string `json:"logs"`
	}
	env.RegisterActivityWithOptions(func(_ context.Context, in archiveIn) (archiveOut, error) {
		if s.beforeArchive != nil {
			if err := s.beforeArchive(in.Path); err != nil {
				return archiveOut{}, err
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.archived = append(s.archived, in.PipelineRun)
		return archiveOut{Logs: map[string]string{"build": "s3://releases/logs/" + in.Path + "/build.log"}}, nil
	}, activity.RegisterOptions{Name: workflows.ActivityArchiveLogs})
}

// artifactResults makes the image runs report one staged artifact each.
func artifactResults(q tekton.PipelineRunRequest) []pipelinev1.PipelineRunResult {
	if q.Labels["kiln.dev/phase"] != "image" {
		return nil
	}
	f := q.Labels["kiln.dev/flavour"]
	arts, _ := json.Marshal([]storage.Artifact{{Name: "rootfs.raw", Key: "staging/" + f + "/rootfs.raw", Size: 42, SHA256: strings.Repeat(fmt.Sprintf("%x", len(f)%16), 64)}})
	return []pipelinev1.PipelineRunResult{{Name: workflows.ResultArtifacts, Value: *pipelinev1.NewStructuredValues(string(arts))}}
}

func storagePlan(parallelism int) workflows.Plan {
	p := testPlan(parallelism)
	p.Storage = &workflows.StoragePlan{StagingBucket: "staging", ReleaseBucket: "releases", ArchiveLogs: true}
	return p
}

func TestArtifactsManifestsAndSet(t *testing.T) {
	st := newStore()
	rec := &recorder{results: artifactResults}
	env := newEnv(t, storagePlan(2), rec, st.register)
	fl := flavours(3)
	env.ExecuteWorkflow(workflows.Build, request(fl, "build", "manifest", "tests"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(st.verified) != 3 || st.promoted != 3 || len(st.manifests) != 3 {
		t.Fatalf("verified %v, promoted %d, manifests %d; want all 3 flavours", st.verified, st.promoted, len(st.manifests))
	}
	for _, f := range fl {
		m := st.manifests[keyOf(f)]
		base := f.Name() + "-1443.3-0123abcd"
		if m.Platform != f.Platform || m.Architecture != f.Arch || m.Test() != storage.TestPassed || len(m.Paths) != 1 ||
			m.Paths[0].Name != base+".rootfs.raw" || m.Paths[0].S3Key != "objects/"+base+"/"+base+".rootfs.raw" ||
			m.Kiln == nil || !strings.HasPrefix(m.Kiln.Logs["image/build"], "s3://releases/logs/") || m.Kiln.Logs["test/build"] == "" {
			t.Errorf("manifest of %s = %+v", f.Name(), m)
		}
	}
	set := st.sets[storage.ManifestSetKey("", "1443.3", "0123abcd")]
	if len(set.Manifests) != 3 {
		t.Errorf("manifest set = %+v", set)
	}
	// Every run's logs are archived: base, packages, and image and test
	// per flavour.
	if len(st.archived) != 2+3+3 {
		t.Errorf("archived %v", st.archived)
	}
	p := progressOf(t, env)
	if p.ManifestSet == "" || p.Phases[0].Logs["build"] == "" {
		t.Errorf("progress: set %q, base logs %v", p.ManifestSet, p.Phases[0].Logs)
	}
	for _, f := range p.Flavours {
		if f.Manifest == "" || f.Base == "" || f.Phases[2].Name != workflows.PhaseArtifacts || f.Phases[2].State != workflows.StateSucceeded {
			t.Errorf("flavour %s: %+v", f.Name, f)
		}
	}
}

func TestRerunSkipsFlavoursWithAManifest(t *testing.T) {
	st := newStore()
	fl := flavours(3)
	built := fl[1]
	key := keyOf(built)
	st.manifests[key] = storage.Manifest{Kiln: &storage.KilnFacts{Flavour: built.Name()}, TestResult: storage.TestPassed, Paths: []storage.Path{{Name: "rootfs.raw", S3Key: "objects/x/rootfs.raw"}}}
	rec := &recorder{results: artifactResults}
	env := newEnv(t, storagePlan(2), rec, st.register)
	env.ExecuteWorkflow(workflows.Build, request(fl, "build", "manifest", "tests"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	for _, q := range rec.reqs {
		if q.Labels["kiln.dev/flavour"] == built.Name() {
			t.Errorf("%s ran for a flavour that has a manifest", q.Key)
		}
	}
	if st.promoted != 2 || slices.Contains(st.verified, built.Name()) {
		t.Errorf("promoted %d, verified %v; want only the two new flavours", st.promoted, st.verified)
	}
	p := progressOf(t, env)
	for _, f := range p.Flavours {
		if f.Name == built.Name() && (f.State != workflows.StateSkipped || !f.Reused || f.Manifest != key || !strings.Contains(f.Reason, "built before")) {
			t.Errorf("reused flavour: %+v", f)
		}
	}
	if set := st.sets[storage.ManifestSetKey("", "1443.3", "0123abcd")]; set.Manifests[built.Name()] != key || len(set.Manifests) != 3 {
		t.Errorf("the set lists the reused manifest too: %+v", set)
	}
}

func TestCorruptArtifactFailsItsFlavour(t *testing.T) {
	st := newStore()
	fl := flavours(3)
	st.corrupt = fl[0].Name()
	rec := &recorder{results: artifactResults}
	env := newEnv(t, storagePlan(3), rec, st.register)
	env.ExecuteWorkflow(workflows.Build, request(fl, "build", "manifest", "tests"))
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeFlavoursFailed || !strings.Contains(err.Error(), fl[0].Name()) {
		t.Fatalf("error = %v, want FlavoursFailed naming %s", err, fl[0].Name())
	}
	p := progressOf(t, env)
	f := p.Flavours[slices.IndexFunc(p.Flavours, func(f workflows.FlavourState) bool { return f.Name == fl[0].Name() })]
	if f.State != workflows.StateFailed || !strings.Contains(f.Error, "staging/"+fl[0].Name()+"/rootfs.raw") || f.Phases[1].State != workflows.StateSkipped {
		t.Errorf("corrupt flavour = %+v, want failed naming the key, tests skipped", f)
	}
	if _, ok := st.manifests[keyOf(fl[0])]; ok || len(st.manifests) != 2 {
		t.Errorf("manifests %d: the corrupt flavour must have none", len(st.manifests))
	}
}

func TestImagePipelineWithoutArtifactsResult(t *testing.T) {
	st := newStore()
	env := newEnv(t, storagePlan(1), &recorder{}, st.register)
	env.ExecuteWorkflow(workflows.Build, request(flavours(1), "build", "manifest"))
	if err := env.GetWorkflowError(); err == nil {
		t.Fatal("the build succeeded without artifacts")
	}
	f := progressOf(t, env).Flavours[0]
	if f.State != workflows.StateFailed || !strings.Contains(f.Error, `reported no "artifacts" result`) {
		t.Fatalf("flavour = %+v, want failed naming the artifacts result", f)
	}
}

func TestNoPublisherFailsBeforeAnythingRuns(t *testing.T) {
	p := storagePlan(1)
	p.S3Only = nil // azure, ali, … have no publisher now
	rec := &recorder{}
	env := newEnv(t, p, rec, newStore().register)
	env.ExecuteWorkflow(workflows.Build, request(flavours(3), "build", "manifest", "publish"))
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeInvalidRequest ||
		!strings.Contains(err.Error(), "no publisher for platform azure") || !strings.Contains(err.Error(), "phases.publish.azure") {
		t.Fatalf("error = %v, want InvalidRequest naming azure and the fix", err)
	}
	if len(rec.reqs) > 0 {
		t.Errorf("%d pipelines ran", len(rec.reqs))
	}
}

// reg registers fn as the activity name: a stand-in that needs no mock
// expectations, so stand-ins of several packages can be combined.
func reg(env *testsuite.TestWorkflowEnvironment, name string, fn any) {
	env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
}
