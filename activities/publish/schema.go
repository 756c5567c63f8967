package publish

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The published-image metadata a flavour's manifest holds, per platform,
// in the shapes Garden Linux's glci writes into a release manifest's
// published_image_metadata (see glci's model: AwsPublishedImageSet,
// AlicloudPublishedImageSet, OpenstackPublishedImageSet,
// GcpPublishedImage, AzurePublishedImage). Publish pipelines report their
// results; MapResults turns them into the platform's shape, checking what
// is required. Every shape is a JSON object; the keys are the schema.
//
//	aws        {"published_aws_images": [{"ami_id", "aws_region_id", "image_name"}]}
//	                                       kiln's own AWS publishing (AWSImages)
//	ali        {"published_alicloud_images": [{"image_id", "image_name", "region_id"}]}
//	                                       results: images (JSON list of {region, id, name})
//	openstack  {"published_openstack_images": [{"image_id", "image_name", "region_name"}]}
//	                                       results: images (JSON list of {region, id, name})
//	gcp        {"gcp_image_name", "gcp_project_name"}
//	                                       results: image-name, project
//	azure      {"published_gallery_images": [{"azure_cloud", "community_gallery_image_id", "hyper_v_generation"}],
//	            "published_marketplace_images": [{"golive_operation_id", "hyper_v_generation", "publish_operation_id", "urn"}]}
//	                                       results: urn and/or gallery-images (JSON list of {id, hyperVGeneration, cloud},
//	                                       cloud public (default) or china); both lists are always present, empty when not reported. A urn
//	                                       becomes one marketplace image; kiln knows neither its Hyper-V
//	                                       generation nor the marketplace operation ids, which stay "".
//	others     {"results": {name: value}}  every result as reported (glci writes null for a platform it
//	                                       does not publish to, such as metal)
type platformSchema struct {
	// required results; any of anyOf.
	required, anyOf []string
	mapFn           func(results map[string]string) (map[string]any, error)
}

var schemas = map[string]platformSchema{
	"ali": {required: []string{"images"}, mapFn: func(r map[string]string) (map[string]any, error) {
		return regionalImages(r, "published_alicloud_images", "image_id", "region_id")
	}},
	"openstack": {required: []string{"images"}, mapFn: func(r map[string]string) (map[string]any, error) {
		return regionalImages(r, "published_openstack_images", "image_id", "region_name")
	}},
	"gcp": {required: []string{"image-name", "project"}, mapFn: func(r map[string]string) (map[string]any, error) {
		return map[string]any{"gcp_image_name": r["image-name"], "gcp_project_name": r["project"]}, nil
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

// AWSImages is the aws published-image metadata for images of one name:
// glci's published_aws_images.
func AWSImages(name string, images []RegionImage) map[string]any {
	out := make([]any, 0, len(images))
	for _, i := range images {
		out = append(out, map[string]any{"ami_id": i.ImageID, "aws_region_id": i.Region, "image_name": name})
	}
	return map[string]any{"published_aws_images": out}
}

// regionalImages maps the "images" result, a JSON list of {region, id,
// name}, to glci's list under listKey with the platform's key names for
// the id and the region.
func regionalImages(r map[string]string, listKey, idKey, regionKey string) (map[string]any, error) {
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
		out = append(out, map[string]any{idKey: im.ID, "image_name": im.Name, regionKey: im.Region})
	}
	return map[string]any{listKey: out}, nil
}

func azureImages(r map[string]string) (map[string]any, error) {
	market := []any{}
	if u := strings.TrimSpace(r["urn"]); u != "" {
		if strings.Count(u, ":") != 3 {
			return nil, fmt.Errorf("result \"urn\": %q is not publisher:offer:sku:version", u)
		}
		market = append(market, map[string]any{
			"golive_operation_id": "", "hyper_v_generation": "", "publish_operation_id": "", "urn": u,
		})
	}
	gallery := []any{}
	if g := strings.TrimSpace(r["gallery-images"]); g != "" {
		var in []struct {
			ID               string `json:"id"`
			HyperVGeneration string `json:"hyperVGeneration"`
			Cloud            string `json:"cloud"`
		}
		if err := json.Unmarshal([]byte(g), &in); err != nil {
			return nil, fmt.Errorf("result \"gallery-images\": want a JSON list of {\"id\", \"hyperVGeneration\", \"cloud\"}: %v", err)
		}
		for i, im := range in {
			if im.ID == "" {
				return nil, fmt.Errorf("result \"gallery-images\"[%d]: id is required", i)
			}
			cloud := im.Cloud
			if cloud == "" {
				cloud = "public" // glci's default
			}
			gallery = append(gallery, map[string]any{
				"azure_cloud": cloud, "community_gallery_image_id": im.ID, "hyper_v_generation": im.HyperVGeneration,
			})
		}
	}
	return map[string]any{"published_gallery_images": gallery, "published_marketplace_images": market}, nil
}
