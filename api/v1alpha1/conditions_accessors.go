package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// GetConditions returns a pointer to the status conditions, for helpers
// that set conditions on any kind of this API.
func (in *CustomerSource) GetConditions() *[]metav1.Condition { return &in.Status.Conditions }

// SetObservedGeneration records the generation the status describes.
func (in *CustomerSource) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// GetConditions returns a pointer to the status conditions.
func (in *Channel) GetConditions() *[]metav1.Condition { return &in.Status.Conditions }

// SetObservedGeneration records the generation the status describes.
func (in *Channel) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// GetConditions returns a pointer to the status conditions.
func (in *Segment) GetConditions() *[]metav1.Condition { return &in.Status.Conditions }

// SetObservedGeneration records the generation the status describes.
func (in *Segment) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// GetConditions returns a pointer to the status conditions.
func (in *Campaign) GetConditions() *[]metav1.Condition { return &in.Status.Conditions }

// SetObservedGeneration records the generation the status describes.
func (in *Campaign) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// GetConditions returns a pointer to the status conditions.
func (in *CampaignRun) GetConditions() *[]metav1.Condition { return &in.Status.Conditions }

// SetObservedGeneration records the generation the status describes.
func (in *CampaignRun) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }

// GetConditions returns a pointer to the status conditions.
func (in *CustomerErasure) GetConditions() *[]metav1.Condition { return &in.Status.Conditions }

// SetObservedGeneration records the generation the status describes.
func (in *CustomerErasure) SetObservedGeneration(g int64) { in.Status.ObservedGeneration = g }
