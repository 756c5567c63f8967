package publish

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kiln-build/kiln/test/reference"
)

func TestMapResults(t *testing.T) {
	tests := []struct {
		platform string
		results  map[string]string
		want     string // JSON, or the error's text
	}{
		{"gcp", map[string]string{"image-name": "gl-1443", "project": "gl-images", "extra": "x"}, `{"gcp_image_name":"gl-1443","gcp_project_name":"gl-images"}`},
		{"gcp", map[string]string{"image-name": "gl-1443"}, `reported no "project" result`},
		{"ali", map[string]string{"images": `[{"region":"cn-beijing","id":"m-1","name":"gl"}]`}, `{"published_alicloud_images":[{"image_id":"m-1","image_name":"gl","region_id":"cn-beijing"}]}`},
		{"ali", map[string]string{"images": `[{"region":"cn-beijing"}]`}, `"images"[0]: region and id are required`},
		{"openstack", map[string]string{"images": `[{"region":"eu-de-1","id":"i-1","name":"gardenlinux-1443.3"}]`}, `{"published_openstack_images":[{"image_id":"i-1","image_name":"gardenlinux-1443.3","region_name":"eu-de-1"}]}`},
		{"openstack", map[string]string{"images": `{"not":"a list"}`}, `want a JSON list`},
		{"openstack", map[string]string{"images": `[]`}, `lists no images`},
		{"azure", map[string]string{"urn": "sap:gardenlinux:greatest:1443.3"}, `{"published_gallery_images":[],"published_marketplace_images":[{"golive_operation_id":"","hyper_v_generation":"","publish_operation_id":"","urn":"sap:gardenlinux:greatest:1443.3"}]}`},
		{"azure", map[string]string{"gallery-images": `[{"id":"/g/1","hyperVGeneration":"V2","cloud":"china"},{"id":"/g/2","hyperVGeneration":"V1"}]`}, `{"published_gallery_images":[{"azure_cloud":"china","community_gallery_image_id":"/g/1","hyper_v_generation":"V2"},{"azure_cloud":"public","community_gallery_image_id":"/g/2","hyper_v_generation":"V1"}],"published_marketplace_images":[]}`},
		{"azure", map[string]string{"gallery-images": `[{"hyperVGeneration":"V2"}]`}, `"gallery-images"[0]: id is required`},
		{"azure", map[string]string{"urn": "not-a-urn"}, `is not publisher:offer:sku:version`},
		{"azure", map[string]string{}, `none of the results`},
		{"vmware", map[string]string{"ova": "s3://b/k"}, `{"results":{"ova":"s3://b/k"}}`},
	}
	for _, tt := range tests {
		got, err := MapResults(tt.platform, tt.results)
		if err != nil {
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s %v: error %q, want %q", tt.platform, tt.results, err, tt.want)
			}
			continue
		}
		b, _ := json.Marshal(got)
		if string(b) != tt.want {
			t.Errorf("%s %v = %s, want %s", tt.platform, tt.results, b, tt.want)
		}
	}
}

func TestAWSImages(t *testing.T) {
	b, _ := json.Marshal(AWSImages("gl-aws", []RegionImage{{Region: "eu-central-1", ImageID: "ami-1"}, {Region: "us-east-1", ImageID: "ami-2"}}))
	if want := `{"published_aws_images":[{"ami_id":"ami-1","aws_region_id":"eu-central-1","image_name":"gl-aws"},{"ami_id":"ami-2","aws_region_id":"us-east-1","image_name":"gl-aws"}]}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

// TestMapResultsMatchesGlci reads release manifests as glci writes them
// (testdata/, and the real ones of test/reference when they are there), turns
// each one's published_image_metadata back into the results a publish
// pipeline would report (or, for aws, the images kiln's AWS publishing
// made), and checks that MapResults/AWSImages produce the same keys at
// every level and, where kiln's inputs carry them, the same values.
func TestMapResultsMatchesGlci(t *testing.T) {
	t.Run("testdata", func(t *testing.T) { checkGlciManifests(t, "testdata", 7) })
	t.Run("reference", func(t *testing.T) {
		checkGlciManifests(t, reference.Path(t, "gardenlinux-s3-metadata"), 7)
	})
}

func checkGlciManifests(t *testing.T, dir string, atLeast int) {
	files, err := filepath.Glob(filepath.Join(dir, "*.s3_metadata.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < atLeast {
		t.Fatalf("%s: %d manifests, want at least %d", dir, len(files), atLeast)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				Platform string         `yaml:"platform"`
				Metadata map[string]any `yaml:"published_image_metadata"`
			}
			if err := yaml.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			if m.Metadata == nil {
				// glci writes null for what it does not publish (metal):
				// kiln has no schema for it either.
				if _, ok := schemas[m.Platform]; ok || m.Platform == "aws" {
					t.Errorf("%s: glci wrote no published_image_metadata, but kiln has a schema for the platform", m.Platform)
				}
				return
			}
			got, err := fromGlci(m.Platform, m.Metadata)
			if err != nil {
				t.Fatal(err)
			}
			want := normalise(t, m.Metadata)
			gotN := normalise(t, got)
			if ws, gs := structure(want), structure(gotN); ws != gs {
				t.Errorf("%s: key structure\n got %s\nwant %s", m.Platform, gs, ws)
			}
			// kiln knows no marketplace operation ids or generation: only
			// the keys can match there.
			if mk, _ := want["published_marketplace_images"].([]any); len(mk) > 0 {
				return
			}
			if wb, gb := mustJSON(t, want), mustJSON(t, gotN); wb != gb {
				t.Errorf("%s: values\n got %s\nwant %s", m.Platform, gb, wb)
			}
		})
	}
}

// fromGlci makes the inputs kiln would have had for glci's metadata md and
// maps them as kiln does.
func fromGlci(platform string, md map[string]any) (map[string]any, error) {
	list := func(key string) []map[string]any {
		var out []map[string]any
		l, _ := md[key].([]any)
		for _, e := range l {
			m, _ := e.(map[string]any)
			out = append(out, m)
		}
		return out
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	regional := func(key, idKey, regionKey string) (map[string]any, error) {
		type image struct {
			Region string `json:"region"`
			ID     string `json:"id"`
			Name   string `json:"name"`
		}
		var in []image
		for _, im := range list(key) {
			in = append(in, image{str(im, regionKey), str(im, idKey), str(im, "image_name")})
		}
		b, _ := json.Marshal(in)
		return MapResults(platform, map[string]string{"images": string(b)})
	}
	switch platform {
	case "aws":
		var images []RegionImage
		var name string
		for i, im := range list("published_aws_images") {
			if n := str(im, "image_name"); i > 0 && n != name {
				return nil, fmt.Errorf("published_aws_images[%d]: image_name %q, the others %q: kiln names all of a flavour's AMIs alike", i, n, name)
			} else {
				name = n
			}
			images = append(images, RegionImage{Region: str(im, "aws_region_id"), ImageID: str(im, "ami_id")})
		}
		return AWSImages(name, images), nil
	case "ali":
		return regional("published_alicloud_images", "image_id", "region_id")
	case "openstack":
		return regional("published_openstack_images", "image_id", "region_name")
	case "gcp":
		return MapResults(platform, map[string]string{"image-name": str(md, "gcp_image_name"), "project": str(md, "gcp_project_name")})
	case "azure":
		results := map[string]string{}
		type gallery struct {
			ID               string `json:"id"`
			HyperVGeneration string `json:"hyperVGeneration"`
			Cloud            string `json:"cloud"`
		}
		var g []gallery
		for _, im := range list("published_gallery_images") {
			g = append(g, gallery{str(im, "community_gallery_image_id"), str(im, "hyper_v_generation"), str(im, "azure_cloud")})
		}
		if len(g) > 0 {
			b, _ := json.Marshal(g)
			results["gallery-images"] = string(b)
		}
		if mk := list("published_marketplace_images"); len(mk) > 0 {
			results["urn"] = str(mk[0], "urn")
		}
		return MapResults(platform, results)
	}
	return nil, fmt.Errorf("platform %s: glci wrote published_image_metadata, but the test knows no inputs for it", platform)
}

// normalise gives v as JSON would decode it.
func normalise(t *testing.T, v any) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(mustJSON(t, v)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// structure describes v's keys at every level: an object's sorted keys with
// their values' structure, a list's elements' structures merged.
func structure(v any) string {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + structure(v[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	case []any:
		var elems []string
		for _, e := range v {
			if s := structure(e); !slices.Contains(elems, s) {
				elems = append(elems, s)
			}
		}
		slices.Sort(elems)
		return "[" + strings.Join(elems, "|") + "]"
	}
	return "_"
}
