package publish

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The published-image metadata a flavour's manifest holds, per platform.
// Publish pipelines report it as pipeline results; MapResults turns them
// into the platform's shape, checking what is required. Every shape is a
// JSON object; the keys are the schema.
//
//	aws        {"images": [{"region", "imageId", "name"}]}           (kiln's own AWS publishing)
//	ali        {"images": [{"region", "imageId", "name"}]}           results: images (JSON list of {region, id, name})
//	openstack  {"images": [{"region", "imageId", "name"}]}           results: images (JSON list of {region, id, name})
//	gcp        {"imageName", "project"}                              results: image-name, project
//	azure      {"urn", "galleryImages": [{"id", "hyperVGeneration", "cloud"}]}
//	                                                                 results: urn and/or gallery-images (JSON list of {id, hyperVGeneration, cloud})
//	others     {"results": {name: value}}                            every result as reported
type platformSchema struct {
	// required results; any of anyOf.
	required, anyOf []string
	mapFn           func(results map[string]string) (map[string]any, error)
}

var schemas = map[string]platformSchema{
	"ali":       {required: []string{"images"}, mapFn: regionalImages},
	"openstack": {required: []string{"images"}, mapFn: regionalImages},
	"gcp": {required: []string{"image-name", "project"}, mapFn: func(r map[string]string) (map[string]any, error) {
		return map[string]any{"imageName": r["image-name"], "project": r["project"]}, nil
	}},
	"azure": {anyOf: []string{"urn", "gallery-images"}, mapFn: azureImages},
}

// MapResults maps a publish pipeline's results to the platform's
// published-image metadata. It names the result that is missing or
// malformed.
func MapResults(platform string, results map[string]string) (map[string]any, error) {
	s, ok := schemas[platform]
	if !ok {
		raw := make(map[string]any, len(results))
		for k, v := range results {
			raw[k] = v
		}
		return map[string]any{"results": raw}, nil
	}
	for _, r := range s.required {
		if strings.TrimSpace(results[r]) == "" {
			return nil, fmt.Errorf("the %s publish pipeline reported no %q result; declare it in the pipeline's results", platform, r)
		}
	}
	if len(s.anyOf) > 0 && !slices.ContainsFunc(s.anyOf, func(r string) bool { return strings.TrimSpace(results[r]) != "" }) {
		return nil, fmt.Errorf("the %s publish pipeline reported none of the results %q; declare one in the pipeline's results", platform, s.anyOf)
	}
	return s.mapFn(results)
}

// AWSImages is the aws published-image metadata for images of one name.
func AWSImages(name string, images []RegionImage) map[string]any {
	out := make([]any, 0, len(images))
	for _, i := range images {
		out = append(out, map[string]any{"region": i.Region, "imageId": i.ImageID, "name": name})
	}
	return map[string]any{"images": out}
}

func regionalImages(r map[string]string) (map[string]any, error) {
	var in []struct {
		Region string `json:"region"`
		ID     string `json:"id"`
		Name   string `json:"name"`
	}
	if err := json.Unmarshal([]byte(r["images"]), &in); err != nil {
		return nil, fmt.Errorf("result \"images\": want a JSON list of {\"region\", \"id\", \"name\"}: %v", err)
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("result \"images\" lists no images")
	}
	out := make([]any, 0, len(in))
	for i, im := range in {
		if im.Region == "" || im.ID == "" {
			return nil, fmt.Errorf("result \"images\"[%d]: region and id are required", i)
		}
		out = append(out, map[string]any{"region": im.Region, "imageId": im.ID, "name": im.Name})
	}
	return map[string]any{"images": out}, nil
}

func azureImages(r map[string]string) (map[string]any, error) {
	out := map[string]any{}
	if u := strings.TrimSpace(r["urn"]); u != "" {
		if strings.Count(u, ":") != 3 {
			return nil, fmt.Errorf("result \"urn\": %q is not publisher:offer:sku:version", u)
		}
		out["urn"] = u
	}
	if g := strings.TrimSpace(r["gallery-images"]); g != "" {
		var in []struct {
			ID               string `json:"id"`
			HyperVGeneration string `json:"hyperVGeneration"`
			Cloud            string `json:"cloud"`
		}
		if err := json.Unmarshal([]byte(g), &in); err != nil {
			return nil, fmt.Errorf("result \"gallery-images\": want a JSON list of {\"id\", \"hyperVGeneration\", \"cloud\"}: %v", err)
		}
		imgs := make([]any, 0, len(in))
		for i, im := range in {
			if im.ID == "" {
				return nil, fmt.Errorf("result \"gallery-images\"[%d]: id is required", i)
			}
			imgs = append(imgs, map[string]any{"id": im.ID, "hyperVGeneration": im.HyperVGeneration, "cloud": im.Cloud})
		}
		out["galleryImages"] = imgs
	}
	return out, nil
}
