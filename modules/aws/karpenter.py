"""Karpenter's controller permissions: it launches, tags and terminates this cluster's worker nodes only.

`Cluster.grant_node_provisioning(identities)` gives them to Karpenter's workload identity; the interruption queue it
drains spot nodes from is `node_interruption.NodeInterruptionQueue`."""
from __future__ import annotations

from typing import Any

from ..core import iam
from ..core.environment import AwsEnvironment


def controller_statements(env: AwsEnvironment, *, cluster_name: str, node_role_arn: str) -> list[dict[str, Any]]:
    """The Karpenter v1 controller policy (getting-started cloudformation.yaml), with this account,
    region and cluster in every ARN, and launches limited to the cluster's discovery-tagged network."""
    ec2 = lambda resource, account=True: env.arn("ec2", resource, account=account)  # noqa: E731
    owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    nodepool = {"aws:RequestTag/karpenter.sh/nodepool": "*"}
    resource_owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    resource_nodepool = {"aws:ResourceTag/karpenter.sh/nodepool": "*"}
    created = [ec2("fleet/*"), ec2("instance/*"), ec2("volume/*"), ec2("network-interface/*"),
               ec2("launch-template/*"), ec2("spot-instances-request/*")]
    profile_tags = {f"kubernetes.io/cluster/{cluster_name}": "owned", "topology.kubernetes.io/region": env.region}
    instance_profiles = env.arn("iam", "instance-profile/*", region=False)
    statements = [
        iam.statement("AllowScopedEC2InstanceAccessActions", ["ec2:RunInstances", "ec2:CreateFleet"],
                      [ec2("image/*", account=False), ec2("snapshot/*", account=False),
                       ec2("spot-instances-request/*"), ec2("launch-template/*"), ec2("capacity-reservation/*")]),
        iam.statement("AllowDiscoveredNetworkAccess", ["ec2:RunInstances", "ec2:CreateFleet"],
                      [ec2("security-group/*"), ec2("subnet/*")],
                      condition={"StringEquals": {"aws:ResourceTag/karpenter.sh/discovery": cluster_name}}),
        iam.statement("AllowScopedEC2InstanceActionsWithTags",
                      ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"], created,
                      condition={"StringEquals": owned, "StringLike": nodepool}),
        iam.statement("AllowScopedResourceCreationTagging", ["ec2:CreateTags"], created, condition={
            "StringEquals": {**owned, "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
            "StringLike": nodepool}),
        iam.statement("AllowScopedResourceTagging", ["ec2:CreateTags"], [ec2("instance/*")], condition={
            "StringEquals": resource_owned, "StringLike": resource_nodepool,
            "ForAllValues:StringEquals": {"aws:TagKeys": ["karpenter.sh/nodeclaim", "Name"]}}),
        iam.statement("AllowScopedDeletion", ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                      [ec2("instance/*"), ec2("launch-template/*")],
                      condition={"StringEquals": resource_owned, "StringLike": resource_nodepool}),
        iam.statement("AllowRegionalReadActions", [
            "ec2:DescribeAvailabilityZones", "ec2:DescribeCapacityReservations", "ec2:DescribeImages",
            "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
            "ec2:DescribeInstances", "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups",
            "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"], "*",
            condition={"StringEquals": {"aws:RequestedRegion": env.region}}),
        iam.statement("AllowSSMReadActions", ["ssm:GetParameter"],
                      [env.arn("ssm", "parameter/aws/service/*", account=False)]),
        iam.statement("AllowPricingReadActions", ["pricing:GetProducts"], "*"),
        iam.statement("AllowPassingInstanceRole", ["iam:PassRole"], [node_role_arn],
                      condition={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}),
        iam.statement("AllowScopedInstanceProfileCreationActions", ["iam:CreateInstanceProfile"],
                      [instance_profiles], condition={
                          "StringEquals": {f"aws:RequestTag/{k}": v for k, v in profile_tags.items()},
                          "StringLike": {"aws:RequestTag/karpenter.sh/nodeclass": "*"}}),
        iam.statement("AllowScopedInstanceProfileTagActions", ["iam:TagInstanceProfile"],
                      [instance_profiles], condition={
                          "StringEquals": {**{f"aws:ResourceTag/{k}": v for k, v in profile_tags.items()},
                                           **{f"aws:RequestTag/{k}": v for k, v in profile_tags.items()}},
                          "StringLike": {"aws:ResourceTag/karpenter.sh/nodeclass": "*",
                                         "aws:RequestTag/karpenter.sh/nodeclass": "*"}}),
        iam.statement("AllowScopedInstanceProfileActions",
                      ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                       "iam:DeleteInstanceProfile"], [instance_profiles], condition={
                          "StringEquals": {f"aws:ResourceTag/{k}": v for k, v in profile_tags.items()},
                          "StringLike": {"aws:ResourceTag/karpenter.sh/nodeclass": "*"}}),
        iam.statement("AllowInstanceProfileReadActions", ["iam:GetInstanceProfile", "iam:ListInstanceProfiles"],
                      [instance_profiles]),
        iam.statement("AllowAPIServerEndpointDiscovery", ["eks:DescribeCluster"],
                      [env.arn("eks", f"cluster/{cluster_name}")]),
    ]
    return statements
