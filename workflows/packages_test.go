package workflows_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/packages"
	"github.com/kiln-build/kiln/workflows"
)

// gardenRepo serves Garden Linux's real InRelease of 1877.14 as
// packages.gardenlinux.io lays it out, and 404 for every other version.
func gardenRepo(t *testing.T) *httptest.Server {
	t.Helper()
	body, err := os.ReadFile("../activities/packages/testdata/gardenlinux-1877.14.InRelease")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /gardenlinux/dists/1877.14/InRelease", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func withCheckPackages(srv *httptest.Server) func(*testsuite.TestWorkflowEnvironment) {
	return func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterActivityWithOptions(packages.New(srv.Client(), nil).CheckPackages, activity.RegisterOptions{Name: workflows.ActivityCheckPackages})
	}
}

func phaseState(p workflows.Progress, name string) workflows.PhaseState {
	for _, ph := range p.Phases {
		if ph.Name == name {
			return ph
		}
	}
	return workflows.PhaseState{}
}

// TestPackagesVersionIsChecked: a build given a packages version checks it
// against the apt repository before anything runs. A version the
// repository lacks fails the build, naming the version and what answered,
// and no pipeline starts; one it has skips the packages phase, saying what
// was checked; without a check the progress says nothing was.
func TestPackagesVersionIsChecked(t *testing.T) {
	srv := gardenRepo(t)
	url := srv.URL + "/gardenlinux/dists/{{.PackagesVersion}}/InRelease"
	p := testPlan(2)
	p.PackagesCheck = &workflows.PackagesCheck{URL: url}
	p.Image.Params = map[string]string{"packages": "{{.PackagesVersion}}"}

	t.Run("missing", func(t *testing.T) {
		rec := &recorder{}
		env := newEnv(t, p, rec, withCheckPackages(srv))
		in := request(flavours(2))
		in.PackagesVersion = "1877.99"
		env.ExecuteWorkflow(workflows.Build, in)
		err := env.GetWorkflowError()
		want := "packages 1877.99 not found: GET " + srv.URL + "/gardenlinux/dists/1877.99/InRelease answered 404"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("build error = %v, want it to say %q", err, want)
		}
		if got := rec.phases(); len(got) != 0 {
			t.Errorf("pipelines ran: %v; want none before the check", got)
		}
		prog := progressOf(t, env)
		if ph := phaseState(prog, workflows.PhasePackages); ph.State != workflows.StateFailed || !strings.Contains(ph.Error, want) {
			t.Errorf("packages phase = %+v, want Failed with %q", ph, want)
		}
		if ph := phaseState(prog, workflows.PhaseBase); ph.State != "" && ph.State != workflows.StatePending {
			t.Errorf("base phase = %+v, want it never started", ph)
		}
	})
	t.Run("present", func(t *testing.T) {
		rec := &recorder{}
		env := newEnv(t, p, rec, withCheckPackages(srv))
		in := request(flavours(2))
		in.PackagesVersion = "1877.14"
		env.ExecuteWorkflow(workflows.Build, in)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if got := rec.phases(); !slices.Equal(got, []string{"base", "image", "image"}) {
			t.Errorf("phases = %v, want base and one image per flavour", got)
		}
		want := "packages 1877.14 exist: GET " + srv.URL + "/gardenlinux/dists/1877.14/InRelease answered 200, Codename 1877.14"
		if ph := phaseState(progressOf(t, env), workflows.PhasePackages); ph.State != workflows.StateSkipped || ph.Reason != want {
			t.Errorf("packages phase = %+v, want Skipped with %q", ph, want)
		}
		for _, q := range rec.reqs {
			if q.Labels["kiln.dev/phase"] == "image" && (len(q.Params) != 1 || q.Params[0].Value.StringVal != "1877.14") {
				t.Errorf("image params = %+v, want packages=1877.14 from {{.PackagesVersion}}", q.Params)
			}
		}
	})
	t.Run("unanswered", func(t *testing.T) {
		down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "try later", http.StatusServiceUnavailable)
		}))
		defer down.Close()
		p := testPlan(2)
		p.PackagesCheck = &workflows.PackagesCheck{URL: down.URL + "/dists/{{.PackagesVersion}}/InRelease"}
		rec := &recorder{}
		env := newEnv(t, p, rec, withCheckPackages(down))
		in := request(flavours(1))
		in.PackagesVersion = "1877.14"
		env.ExecuteWorkflow(workflows.Build, in)
		err := env.GetWorkflowError()
		want := "packages 1877.14: GET " + down.URL + "/dists/1877.14/InRelease answered 503 Service Unavailable; still so after 10m0s of retries"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("build error = %v, want it to say %q", err, want)
		}
		if got := rec.phases(); len(got) != 0 {
			t.Errorf("pipelines ran: %v; want none", got)
		}
	})
	t.Run("unchecked", func(t *testing.T) {
		rec := &recorder{}
		env := newEnv(t, testPlan(2), rec)
		in := request(flavours(1))
		in.PackagesVersion = "1877.99"
		env.ExecuteWorkflow(workflows.Build, in)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		want := "packages 1877.99: not checked (config: packages.check)"
		if ph := phaseState(progressOf(t, env), workflows.PhasePackages); ph.State != workflows.StateSkipped || ph.Reason != want {
			t.Errorf("packages phase = %+v, want Skipped with %q", ph, want)
		}
	})
}
