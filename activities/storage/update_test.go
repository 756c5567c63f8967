package storage_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kiln-build/kiln/activities/storage"
)

func putRequest(buildID string) storage.PutManifestRequest {
	return storage.PutManifestRequest{
		Identity: tpmIdentity(), BuildTimestamp: time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC), BuildID: buildID,
		Files: []storage.File{{Name: tpmBase + ".raw", Key: "gardenlinux/objects/" + tpmBase + "/" + tpmBase + ".raw", Size: 5, SHA256: strings.Repeat("a", 64), MD5: strings.Repeat("b", 32), Suffix: ".raw"}},
	}
}

// TestConcurrentPutManifest: two writers of one base name; exactly one
// body wins, both get the key, and the object is the winner's whole.
func TestConcurrentPutManifest(t *testing.T) {
	e := newEnv(t)
	for round := range 10 {
		e.use(storageConfig(fmt.Sprintf("round%d/", round)))
		var wg sync.WaitGroup
		keys, errs := make([]string, 2), make([]error, 2)
		for i := range 2 {
			ae := e.newActivityEnv()
			wg.Go(func() {
				v, err := ae.ExecuteActivity(e.acts.PutManifest, putRequest(fmt.Sprintf("writer-%d-%s", i, strings.Repeat("x", 4096))))
				if errs[i] = err; err == nil {
					errs[i] = v.Get(&keys[i])
				}
			})
		}
		wg.Wait()
		want := fmt.Sprintf("round%d/meta/singles/%s", round, tpmBase)
		if errs[0] != nil || errs[1] != nil || keys[0] != want || keys[1] != want {
			t.Fatalf("round %d: %v %v, keys %q %q", round, errs[0], errs[1], keys[0], keys[1])
		}
		body := e.get("releases", want)
		var m storage.Manifest
		if err := yaml.Unmarshal(body, &m); err != nil || m.Kiln == nil {
			t.Fatalf("round %d: %v\n%s", round, err, body)
		}
		winner := strings.TrimSuffix(strings.TrimPrefix(m.Kiln.BuildID, "writer-"), "-"+strings.Repeat("x", 4096))
		exp, err := storage.EncodeManifest(storage.BuildManifest(putRequest("writer-"+winner+"-"+strings.Repeat("x", 4096)), storage.LayoutGardenLinux, "releases", want))
		if err != nil || string(body) != string(exp) {
			t.Errorf("round %d: the object is not writer %s's body", round, winner)
		}
		// A later writer changes nothing either.
		if err := e.run(nil, e.acts.PutManifest, putRequest("late")); err != nil || string(e.get("releases", want)) != string(body) {
			t.Errorf("round %d: a later PutManifest: %v, the object changed", round, err)
		}
	}
}

// TestConcurrentUpdates: SetPublished and SetTestResult at once, 20
// rounds; both fields are there after every round.
func TestConcurrentUpdates(t *testing.T) {
	e := newEnv(t)
	var key string
	if err := e.run(&key, e.acts.PutManifest, putRequest("build")); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		images := map[string]any{"published_aws_images": []any{map[string]any{"ami_id": fmt.Sprintf("ami-%d", round), "aws_region_id": "eu-central-1"}}}
		result := []string{storage.TestPassed, storage.TestFailed}[round%2]
		var wg sync.WaitGroup
		errs := make([]error, 2)
		pub, test := e.newActivityEnv(), e.newActivityEnv()
		wg.Go(func() {
			_, errs[0] = pub.ExecuteActivity(e.acts.SetPublished, storage.SetPublishedRequest{Key: key, Images: images})
		})
		wg.Go(func() {
			_, errs[1] = test.ExecuteActivity(e.acts.SetTestResult, storage.SetTestResultRequest{Key: key, TestResult: result})
		})
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", round, errs[0], errs[1])
		}
		var m storage.Manifest
		if err := yaml.Unmarshal(e.get("releases", key), &m); err != nil {
			t.Fatal(err)
		}
		if m.Test() != result || !reflect.DeepEqual(m.PublishedImageMetadata, images) {
			t.Errorf("round %d: test_result %v, published_image_metadata %v; want %s and %v", round, m.TestResult, m.PublishedImageMetadata, result, images)
		}
	}
	if err := e.run(nil, e.acts.SetTestResult, storage.SetTestResultRequest{Key: key}); err != nil {
		t.Fatal(err)
	}
	if b := string(e.get("releases", key)); !strings.Contains(b, "test_result: null\n") || !strings.Contains(b, "ami-19") {
		t.Errorf("after clearing the test result:\n%s", b)
	}
	wantAppError(t, e.run(nil, e.acts.SetTestResult, storage.SetTestResultRequest{Key: key, TestResult: "flaky"}), storage.ErrTypeBadRequest, "flaky")
	wantAppError(t, e.run(nil, e.acts.SetPublished, storage.SetPublishedRequest{Key: "gardenlinux/meta/singles/none"}), storage.ErrTypeArtifactMissing, "none")
}

// TestUpdateKeepsGardenLinuxManifest: an update of a manifest Garden
// Linux's tooling wrote changes its one key and keeps every other as it
// was, unknown ones too.
func TestUpdateKeepsGardenLinuxManifest(t *testing.T) {
	paths := []string{"testdata/kvm-gardener_prod-arm64.newer-tooling.yaml", "testdata/aws-gardener_prod_tpm2_trustedboot-amd64.s3_metadata.yaml"}
	if hasReference() {
		paths = append(paths, filepath.Join(referenceDir(t), "aws-gardener_prod-amd64.s3_metadata.yaml"))
	}
	e := newEnv(t)
	for _, path := range paths {
		before, b := raw(t, path)
		key := before["s3_key"].(string)
		e.put("releases", key, b)
		images := map[string]any{"published_kiln_images": []any{"an image"}}
		for range 2 { // the second changes nothing
			if err := e.run(nil, e.acts.SetPublished, storage.SetPublishedRequest{Key: key, Images: images}); err != nil {
				t.Fatal(err)
			}
		}
		body := e.get("releases", key)
		var after map[string]any
		if err := yaml.Unmarshal(body, &after); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(after["published_image_metadata"], images) {
			t.Errorf("%s: published_image_metadata = %v", path, after["published_image_metadata"])
		}
		delete(after, "published_image_metadata")
		delete(before, "published_image_metadata")
		if !reflect.DeepEqual(before, after) {
			t.Errorf("%s: other keys changed:\nbefore %v\nafter  %v", path, before, after)
		}
		if s := string(body); !strings.Contains(s, "build_timestamp: '2025-09-08T11:") && !strings.Contains(s, "build_timestamp: 2025-09-08 11:") {
			t.Errorf("%s: build_timestamp's style changed:\n%s", path, s)
		}
	}
}
