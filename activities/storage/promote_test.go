package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows/release"
)

// verified stages and verifies artifacts, returning Verify's result.
func (e *env) verified(files map[string][]byte, names ...string) []storage.Artifact {
	e.t.Helper()
	var arts []storage.Artifact
	for _, n := range names {
		arts = append(arts, e.stage(n, files[n]))
	}
	var res storage.VerifyResult
	if err := e.run(&res, e.acts.Verify, storage.VerifyRequest{Flavour: "aws", Artifacts: arts}); err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	return res.Artifacts
}

func (e *env) tags(key string) map[string]string {
	e.t.Helper()
	out, err := e.s3.GetObjectTagging(context.Background(), &s3.GetObjectTaggingInput{Bucket: aws.String("releases"), Key: &key})
	if err != nil {
		e.t.Fatalf("tags of %s: %v", key, err)
	}
	m := map[string]string{}
	for _, tg := range out.TagSet {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}

func TestPromoteGardenLinuxLayout(t *testing.T) {
	e := newEnv(t)
	files := map[string][]byte{tpmBase + ".raw": bytes.Repeat([]byte("img"), 1<<16), "manifest.txt": []byte("packages\n")}
	arts := e.verified(files, tpmBase+".raw", "manifest.txt")
	id := tpmIdentity()
	var res storage.PromoteResult
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts, Identity: id}); err != nil || res.Copied != 2 {
		t.Fatalf("promote: %v %+v", err, res)
	}
	dir := "gardenlinux/objects/" + tpmBase + "/"
	want := []storage.File{
		{Name: tpmBase + ".raw", Key: dir + tpmBase + ".raw", Size: arts[0].Size, SHA256: arts[0].SHA256, MD5: arts[0].MD5, Suffix: ".raw"},
		{Name: tpmBase + ".manifest.txt", Key: dir + tpmBase + ".manifest.txt", Size: arts[1].Size, SHA256: arts[1].SHA256, MD5: arts[1].MD5, Suffix: ".manifest.txt"},
	}
	for i, f := range res.Files {
		if f != want[i] {
			t.Errorf("file %d = %+v\nwant %+v", i, f, want[i])
		}
		if got := e.get("releases", f.Key); !bytes.Equal(got, files[arts[i].Name]) {
			t.Errorf("%s differs from the artifact", f.Key)
		}
		tags := e.tags(f.Key)
		wantTags := map[string]string{"architecture": "amd64", "platform": "aws", "version": "1877.3", "committish": commit, "md5sum": f.MD5, "sha256sum": f.SHA256}
		if len(tags) != len(wantTags) {
			t.Errorf("tags of %s = %v, want %v", f.Key, tags, wantTags)
		}
		for k, v := range wantTags {
			if tags[k] != v {
				t.Errorf("tag %s of %s = %q, want %q", k, f.Key, tags[k], v)
			}
		}
	}
	// A re-run copies nothing.
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts, Identity: id}); err != nil || res.Copied != 0 {
		t.Errorf("second promote: %v, copied %d", err, res.Copied)
	}
	// A file Garden Linux's tooling uploaded (no sha256 metadata, its
	// sha256sum tag) is not copied again; tags that differ are set.
	key := want[0].Key
	glTags := url.Values{"sha256sum": {arts[0].SHA256}, "committish": {"old"}}.Encode()
	if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("releases"), Key: &key, Body: bytes.NewReader(files[arts[0].Name]), Tagging: &glTags}); err != nil {
		t.Fatal(err)
	}
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts[:1], Identity: id}); err != nil || res.Copied != 0 {
		t.Errorf("promote over Garden Linux's file: %v, copied %d", err, res.Copied)
	}
	if tags := e.tags(key); tags["committish"] != commit || tags["platform"] != "aws" {
		t.Errorf("tags after promote over Garden Linux's file = %v", tags)
	}
	// Other content at the key is replaced.
	e.put("releases", key, bytes.Repeat([]byte("x"), len(files[arts[0].Name])))
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts[:1], Identity: id}); err != nil || res.Copied != 1 {
		t.Errorf("promote over other content: %v, copied %d", err, res.Copied)
	}
	// Without a base name, nothing is promoted.
	err := e.run(nil, e.acts.Promote, storage.PromoteRequest{Artifacts: arts, Identity: release.Identity{}})
	wantAppError(t, err, storage.ErrTypeBadRequest, "no base name")
}

func TestPromoteContentAddressed(t *testing.T) {
	e := newEnv(t)
	e.use(storage.Config{StagingBucket: "staging", ReleaseBucket: "releases", Prefix: "gardenlinux/", Layout: storage.LayoutContentAddressed})
	files := map[string][]byte{"rootfs.raw": bytes.Repeat([]byte("img"), 1<<16), "manifest.txt": []byte("packages\n")}
	arts := e.verified(files, "rootfs.raw", "manifest.txt")
	// Without MD5 (not verified): Promote computes it.
	arts[1].MD5 = ""
	var res storage.PromoteResult
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts, Identity: tpmIdentity()}); err != nil || res.Copied != 2 {
		t.Fatalf("promote: %v %+v", err, res)
	}
	for i, f := range res.Files {
		if f.Key != storage.ObjectKey("gardenlinux/", arts[i].SHA256) || f.Name != arts[i].Name || f.MD5 != md5hex(files[arts[i].Name]) {
			t.Errorf("file %d = %+v", i, f)
		}
		if sum := sha256.Sum256(e.get("releases", f.Key)); hex.EncodeToString(sum[:]) != arts[i].SHA256 {
			t.Errorf("%s differs from the artifact", f.Key)
		}
	}
	if res.Files[0].Suffix != ".rootfs.raw" {
		t.Errorf("suffix = %q", res.Files[0].Suffix)
	}
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts}); err != nil || res.Copied != 0 {
		t.Errorf("second promote: %v, copied %d", err, res.Copied)
	}
}

func TestPromoteCopiesLargeArtifactsInParts(t *testing.T) {
	e := newEnv(t)
	e.use(storage.Config{StagingBucket: "staging", ReleaseBucket: "releases", Prefix: "gl/", CopyPartSize: 5 << 20})
	content := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16+7) // 12 MiB and a bit: three parts
	arts := e.verified(map[string][]byte{"rootfs.raw": content}, "rootfs.raw")
	var res storage.PromoteResult
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts, Identity: tpmIdentity()}); err != nil || res.Copied != 1 {
		t.Fatalf("promote: %v %+v", err, res)
	}
	f := res.Files[0]
	if f.Key != "gl/objects/"+tpmBase+"/"+tpmBase+".rootfs.raw" {
		t.Errorf("key = %s", f.Key)
	}
	if sum := sha256.Sum256(e.get("releases", f.Key)); hex.EncodeToString(sum[:]) != arts[0].SHA256 {
		t.Error("the object copied in parts differs from the artifact")
	}
	if tags := e.tags(f.Key); tags["sha256sum"] != arts[0].SHA256 || tags["md5sum"] != arts[0].MD5 || tags["committish"] != commit {
		t.Errorf("tags after a multipart copy = %v", tags)
	}
	head, err := e.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("releases"), Key: &f.Key})
	if err != nil || head.Metadata["sha256"] != arts[0].SHA256 {
		t.Errorf("metadata = %v, %v", head, err)
	}
	if err := e.run(&res, e.acts.Promote, storage.PromoteRequest{Artifacts: arts, Identity: tpmIdentity()}); err != nil || res.Copied != 0 {
		t.Errorf("second promote: %v, copied %d", err, res.Copied)
	}
}

func TestGardenLinuxName(t *testing.T) {
	for _, tt := range []struct{ name, file, suffix string }{
		{tpmBase + ".raw", tpmBase + ".raw", ".raw"},
		{tpmBase + ".chroot.test.xml", tpmBase + ".chroot.test.xml", ".chroot.test.xml"},
		{"rootfs.raw", tpmBase + ".rootfs.raw", ".rootfs.raw"},
		{".raw", tpmBase + ".raw", ".raw"},
	} {
		if f, s := storage.GardenLinuxName(tpmBase, tt.name); f != tt.file || s != tt.suffix {
			t.Errorf("GardenLinuxName(%q) = %q, %q", tt.name, f, s)
		}
	}
	if !strings.HasPrefix(storage.GardenLinuxObjectKey("p/", tpmBase, tpmBase+".raw"), "p/objects/"+tpmBase+"/") {
		t.Error("GardenLinuxObjectKey")
	}
}
