package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadYAML(t *testing.T, yaml string) Config {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "kiln.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStorageAndPublishingProblemsAreNamed(t *testing.T) {
	c := loadYAML(t, `
namespace: builds
phases:
  image: {pipelineRef: image}
  publish:
    gcp: {pipelineRef: publish-gcp}
    aws: {pipelineRef: publish-aws}
storage:
  prefix: gardenlinux
  credentials: {accessKeyIdEnv: KEY}
publishing:
  s3Only: [kvm, gcp]
  aws:
    bootMode: bios
    regions: [eu-west-1, ""]
    credentials: {accessKeyIdFile: id, accessKeyIdEnv: KEY, secretAccessKeyEnv: SECRET}
`)
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"storage.stagingBucket: required",
		"storage.releaseBucket: required",
		`storage.prefix: "gardenlinux" must end with /`,
		"storage.credentials: secretAccessKeyEnv or secretAccessKeyFile is required",
		"publishing.s3Only: gcp also has phases.publish.gcp",
		"publishing.aws.region: required",
		`publishing.aws.bootMode: "bios"`,
		"publishing.aws.regions[1]: empty",
		"publishing.aws: phases.publish.aws is also set",
		"publishing.aws.credentials: accessKeyIdEnv and accessKeyIdFile are both set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors do not say %q:\n%v", want, err)
		}
	}
}

func TestStoragePlanAndStaticCredentials(t *testing.T) {
	c := loadYAML(t, `
namespace: builds
phases:
  image: {pipelineRef: image}
storage:
  endpoint: http://127.0.0.1:9
  pathStyle: true
  stagingBucket: staging
  releaseBucket: releases
  prefix: gardenlinux/
  credentials: {accessKeyIdFile: keys/id, secretAccessKeyEnv: KILN_TEST_SECRET}
publishing:
  s3Only: [kvm, metal]
  aws: {region: eu-central-1, regions: [eu-west-1], public: true}
`)
	p, _, err := c.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Storage == nil || p.Storage.ReleaseBucket != "releases" || !p.Storage.ArchiveLogs || p.AWS == nil || !p.AWS.Public || len(p.S3Only) != 2 {
		t.Fatalf("plan: storage %+v aws %+v s3Only %v", p.Storage, p.AWS, p.S3Only)
	}
	if c.LogBucket() != "releases" {
		t.Errorf("log bucket = %s", c.LogBucket())
	}
	// The keys come from a file relative to the config and from the
	// environment, at retrieval; a missing one is named, not shown.
	if err := os.MkdirAll(filepath.Join(c.dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "keys", "id"), []byte("AKIDEXAMPLE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prov := c.Storage.Credentials.provider(c)
	t.Setenv("KILN_TEST_SECRET", "")
	if _, err := prov.Retrieve(context.Background()); err == nil || !strings.Contains(err.Error(), "KILN_TEST_SECRET is empty") {
		t.Errorf("error = %v, want one naming the empty variable", err)
	}
	t.Setenv("KILN_TEST_SECRET", "wJalrXUtnFEMI")
	prov = c.Storage.Credentials.provider(c)
	cr, err := prov.Retrieve(context.Background())
	if err != nil || cr.AccessKeyID != "AKIDEXAMPLE" || cr.SecretAccessKey != "wJalrXUtnFEMI" {
		t.Errorf("credentials = %+v, %v", cr, err)
	}
	cl, err := c.S3Client(context.Background())
	if err != nil || cl == nil {
		t.Fatalf("S3 client: %v", err)
	}
	if o := cl.Options(); !o.UsePathStyle || *o.BaseEndpoint != "http://127.0.0.1:9" || o.Region != "us-east-1" {
		t.Errorf("S3 options: path style %v, endpoint %v, region %s", o.UsePathStyle, o.BaseEndpoint, o.Region)
	}
}

func TestAWSPublishingNeedsStorage(t *testing.T) {
	c := loadYAML(t, `
namespace: builds
phases: {image: {pipelineRef: image}}
publishing: {aws: {region: eu-central-1}}
`)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "publishing.aws: needs storage") {
		t.Errorf("error = %v", err)
	}
}
