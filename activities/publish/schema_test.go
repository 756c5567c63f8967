package publish

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMapResults(t *testing.T) {
	tests := []struct {
		platform string
		results  map[string]string
		want     string // JSON, or the error's text
	}{
		{"gcp", map[string]string{"image-name": "gl-1443", "project": "gl-images", "extra": "x"}, `{"imageName":"gl-1443","project":"gl-images"}`},
		{"gcp", map[string]string{"image-name": "gl-1443"}, `reported no "project" result`},
		{"ali", map[string]string{"images": `[{"region":"cn-beijing","id":"m-1","name":"gl"}]`}, `{"images":[{"imageId":"m-1","name":"gl","region":"cn-beijing"}]}`},
		{"ali", map[string]string{"images": `[{"region":"cn-beijing"}]`}, `"images"[0]: region and id are required`},
		{"openstack", map[string]string{"images": `{"not":"a list"}`}, `want a JSON list`},
		{"openstack", map[string]string{"images": `[]`}, `lists no images`},
		{"azure", map[string]string{"urn": "sap:gardenlinux:greatest:1443.3"}, `{"urn":"sap:gardenlinux:greatest:1443.3"}`},
		{"azure", map[string]string{"gallery-images": `[{"id":"/g/1","hyperVGeneration":"V2","cloud":"public"}]`}, `{"galleryImages":[{"cloud":"public","hyperVGeneration":"V2","id":"/g/1"}]}`},
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
	if want := `{"images":[{"imageId":"ami-1","name":"gl-aws","region":"eu-central-1"},{"imageId":"ami-2","name":"gl-aws","region":"us-east-1"}]}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
