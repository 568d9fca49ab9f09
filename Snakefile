# infbrush workflow: `snakemake --cores 2` builds the demo chain; `snakemake --profile slurm <target>` on a cluster.
# Configuration: params.yaml (validated against workflow/schemas/params.schema.yaml before any job starts).
# Every rule calls one `infbrush <command>`; see workflow/rules/*.smk, one file per pipeline stage.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/viewer.smk"
include: "workflow/rules/brush.smk"
include: "workflow/rules/large_field.smk"


rule all:
    input:
        default_targets(P),
