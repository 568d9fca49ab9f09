# Large fields (issue 29): a dataset of fields (large_field.tiles_from names the small-patch dataset) compares its
# whole-image model with the small model's tiles assembled on the same held-out reference fields.


rule large_field:
    input:
        field_weights=L.weights("{ds}"),
        field_store=L.images("{ds}"),
        field_embeddings=L.embeddings("{ds}"),
        tile_weights=lambda wc: L.weights(P.get(wc.ds, "large_field.tiles_from")),
        checkpoint=lambda wc: P.checkpoint(wc.ds),
    output:
        json=L.large_field("{ds}"),
        gallery=L.large_field_gallery("{ds}"),
        fields=directory(L.large_field_fields("{ds}")),
    wildcard_constraints:
        ds=P.names(lambda ds: P.get(ds, "large_field")),
    conda:
        CONDA_ENV
    log:
        "logs/{ds}/large_field.log",
    benchmark:
        "logs/benchmarks/{ds}/large_field.tsv"
    params:
        tile_size=lambda wc: tile_size(P, wc.ds),
        device=lambda wc: P.device(wc.ds),
        flags=P.flags_of(
            "large_field.n_fields", "large_field.batch_fields", "large_field.steps",
            "large_field.sampler", "large_field.spacing", "large_field.field_guidance", "large_field.tile_guidance",
            "large_field.seed", "large_field.crops_per_field", "large_field.bootstrap",
            "large_field.field_condition_tiles",
            {"large_field.overlaps": "--overlap"}, "embedding.kind", "embedding.model", "embedding.checkpoint",
        ),
    resources:
        **P.resources("large_field"),
    threads: 2
    shell:
        "infbrush large-field --field-weights {input.field_weights} --field-store {input.field_store}"
        " --field-embeddings {input.field_embeddings} --tile-weights {input.tile_weights}"
        " --tile-size {params.tile_size} {params.flags} --device {params.device} --out {output.json}"
        " --gallery {output.gallery} --fields-dir {output.fields} --no-progress > {log} 2>&1"
