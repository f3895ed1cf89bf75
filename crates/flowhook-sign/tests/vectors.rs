//! Every vector of `shared/vectors/yida-sign.json` (made with the JDK itself), copied into the
//! crate so a lone clone still tests it: sorted keys, signing string and sign must all agree.

use flowhook_sign::yida;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vector {
    name: String,
    system_token: String,
    params: serde_json::Map<String, serde_json::Value>,
    sorted_keys: Vec<String>,
    signing_string: String,
    sign: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("data/yida-sign.json");
    serde_json::from_str(text).expect("the vector file parses")
}

fn params(v: &Vector) -> Vec<(String, String)> {
    v.params
        .iter()
        .map(|(k, val)| (k.clone(), val.as_str().expect("string values").to_owned()))
        .collect()
}

#[test]
fn every_jdk_vector_passes() {
    let vectors = vectors();
    assert!(
        vectors.len() >= 6,
        "the vector file has {} vectors",
        vectors.len()
    );
    for v in &vectors {
        let p = params(v);
        let sorted: Vec<&str> = yida::sorted_params(&p)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(sorted, v.sorted_keys, "{}: key order", v.name);
        assert_eq!(
            yida::signing_string(&p, &v.system_token).unwrap(),
            v.signing_string,
            "{}: signing string",
            v.name
        );
        assert_eq!(
            yida::sign(&p, &v.system_token).unwrap(),
            v.sign,
            "{}: sign",
            v.name
        );

        let mut signed = p.clone();
        signed.push(("sign".into(), v.sign.to_uppercase()));
        assert_eq!(yida::verify(&signed, &v.system_token), Ok(()), "{}", v.name);
        assert!(
            yida::verify(&signed, "not-the-token").is_err(),
            "{}",
            v.name
        );
    }
}
