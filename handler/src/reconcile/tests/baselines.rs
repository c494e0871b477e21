//! Where a baseline (the key a revert goes back to) may come from: only from what ARM answered
//! keyguard, never from an event's carried body, which anyone who can emit an event writes.

use super::*;

#[tokio::test]
async fn a_key_in_an_events_carried_body_never_becomes_the_baseline_and_a_read_of_arm_does() {
    // Without the estate check the foreign vault is compliant on the body's word alone: the
    // case where only "never a baseline from a carried body" stands between the attacker and
    // the revert target (with the check, the body is drift and the live resource is read).
    let h = Harness::start(&format!("[settings]\nestate_check = false\n{CMK_ENFORCE}")).await;
    let id = account("stcmkpayments");
    // A body showing a compliant key in a vault nobody vetted: compliant, decided without a read.
    let foreign = json!({"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
        "keyvaulturi": "https://kv-attacker.vault.azure.net", "keyname": "hostage", "keyversion": ""}});
    let outcome = handle_event(&h.ctx, &notification(&id, foreign)).await.unwrap();
    assert_eq!(outcome.outcome.verdict.as_str(), "compliant", "{outcome:?}");
    assert_eq!(
        h.store.baseline(&id).await.unwrap(),
        None,
        "the carried key is not recorded"
    );

    // keyguard's own read of ARM (the timer) records the live key.
    let looked = h.timer_look(&id).await;
    assert_eq!(looked.outcome.verdict.as_str(), "compliant");
    let baseline = h.store.baseline(&id).await.unwrap().expect("recorded from ARM");
    assert_eq!(baseline.key.key_name(), "cmk-storage");
    assert_eq!(baseline.key.vault_uri().as_deref(), Some(azure_sim::DEMO_KEYVAULT));

    // A later carried body naming the foreign key again does not replace it.
    let again = json!({"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
        "keyvaulturi": "https://kv-attacker.vault.azure.net", "keyname": "hostage", "keyversion": ""}});
    let mut event = notification(&id, again);
    event.id = "second-notification".into();
    handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(
        h.store
            .baseline(&id)
            .await
            .unwrap()
            .map(|b| b.key.key_name().to_string()),
        Some("cmk-storage".to_string())
    );
}
