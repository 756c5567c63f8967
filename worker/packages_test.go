package worker

import (
	"strings"
	"testing"
)

func TestPackagesCheckIsPlanned(t *testing.T) {
	c := loadYAML(t, `
namespace: builds
phases:
  image: {pipelineRef: image}
packages:
  check:
    url: "https://packages.gardenlinux.io/gardenlinux/dists/{{.PackagesVersion}}/InRelease"
`)
	p, _, err := c.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.PackagesCheck == nil || p.PackagesCheck.URL != "https://packages.gardenlinux.io/gardenlinux/dists/{{.PackagesVersion}}/InRelease" {
		t.Errorf("plan's packages check = %+v", p.PackagesCheck)
	}
	c, err = LoadConfig("../deploy/kiln.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if p, _, err = c.Plan(); err != nil || p.PackagesCheck == nil || !strings.HasPrefix(p.PackagesCheck.URL, "https://packages.gardenlinux.io/gardenlinux/dists/") {
		t.Errorf("deploy/kiln.yaml's packages check = %+v, %v; want Garden Linux's repository", p.PackagesCheck, err)
	}
	storage := `
namespace: builds
phases:
  image: {pipelineRef: image}
storage: {stagingBucket: staging, releaseBucket: releases}
packages:
  check:
    s3Key: "gardenlinux/dists/{{.PackagesVersion}}/InRelease"
`
	if p, _, err = loadYAML(t, storage).Plan(); err != nil || p.PackagesCheck == nil || p.PackagesCheck.Bucket != "releases" {
		t.Errorf("s3Key without a bucket: %+v, %v; want the release bucket", p.PackagesCheck, err)
	}
	if p, _, err = loadYAML(t, storage+"    bucket: gardenlinux-repo\n").Plan(); err != nil || p.PackagesCheck == nil || p.PackagesCheck.Bucket != "gardenlinux-repo" {
		t.Errorf("s3Key with a bucket: %+v, %v", p.PackagesCheck, err)
	}
}

func TestPackagesCheckProblemsAreNamed(t *testing.T) {
	for _, tc := range []struct {
		name, check string
		want        []string
	}{
		{"both", `{url: "https://r/dists/{{.PackagesVersion}}/Release", s3Key: k}`, []string{"packages.check: exactly one of url and s3Key"}},
		{"neither", `{}`, []string{"packages.check: exactly one of url and s3Key"}},
		{"a bucket for a url", `{url: "https://r/Release", bucket: b}`, []string{"packages.check.bucket: only for s3Key"}},
		{"an unknown field", `{url: "https://r/dists/{{.PackageVersion}}/Release"}`, []string{"packages.check.url", "PackageVersion"}},
		{"a template that does not parse", `{url: "https://r/dists/{{.PackagesVersion/Release"}`, []string{"packages.check.url"}},
		{"no http", `{url: "ftp://r/dists/{{.PackagesVersion}}/Release"}`, []string{"packages.check.url", "want an http or https URL"}},
		{"credentials", `{url: "https://me:secret@r/dists/{{.PackagesVersion}}/Release"}`, []string{"packages.check.url", "holds credentials"}},
		{"an s3Key without storage", `{s3Key: "dists/{{.PackagesVersion}}/InRelease"}`, []string{"packages.check.s3Key: needs storage"}},
		{"an s3Key that does not parse", `{s3Key: "dists/{{.PackagesVersion"}`, []string{"packages.check.s3Key", "packages.check.s3Key: needs storage"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := loadYAML(t, "namespace: builds\nphases:\n  image: {pipelineRef: image}\npackages:\n  check: "+tc.check+"\n").Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors do not say %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("an error shows the URL's password:\n%v", err)
			}
		})
	}
}
