//! Demo data for a fresh organization: contacts with deals spread over the default
//! pipeline, written through the same use cases the API calls (so events, activities
//! and history are all there).

use nexus_adapters_http::Services;
use nexus_application::AppError;
use nexus_application::sales::{ActivityInput, DealInput, MoveInput};
use nexus_domain::ContactId;
use serde_json::json;

const PEOPLE: [(&str, &str, &str, &str, &str); 8] = [
    (
        "Ada",
        "Lovelace",
        "Analytical Engines",
        "48000.00",
        "Negotiation",
    ),
    ("Grace", "Hopper", "Compiler Works", "12500.00", "Proposal"),
    ("Alan", "Turing", "Bletchley Labs", "9900.00", "Qualified"),
    (
        "Katherine",
        "Johnson",
        "Orbital Math",
        "30000.00",
        "Closed Won",
    ),
    ("Edsger", "Dijkstra", "Shortest Paths BV", "7200.00", "Lead"),
    (
        "Barbara",
        "Liskov",
        "Substitution Inc",
        "15000.00",
        "Closed Lost",
    ),
    ("Donald", "Knuth", "Literate Press", "4100.00", "Lead"),
    (
        "Margaret",
        "Hamilton",
        "Apollo Software",
        "64000.00",
        "Proposal",
    ),
];

/// # Errors
/// Any use case failing.
pub async fn fill(services: &Services, access_token: String) -> Result<(), AppError> {
    let actor = services.auth.authenticate(access_token).await?;
    let pipeline = services
        .sales
        .pipelines(actor)
        .await?
        .into_iter()
        .find(|p| p.pipeline.is_default)
        .ok_or(AppError::NotFound)?;
    for (first, last, company, amount, stage) in PEOPLE {
        let body = json!({
            "firstName": first, "lastName": last, "company": company,
            "email": format!("{}@{}.example", first.to_lowercase(), last.to_lowercase()),
            "tags": ["demo"], "lifecycleStage": "sales_qualified",
        });
        let contact = services
            .contacts
            .create(actor, body.as_object().cloned().unwrap_or_default())
            .await?;
        let contact_id: ContactId = contact.id;
        let deal = services
            .sales
            .create_deal(
                actor,
                DealInput {
                    title: format!("{company} — annual plan"),
                    amount: amount.into(),
                    currency: Some("USD".into()),
                    contact_id,
                    pipeline_id: Some(pipeline.pipeline.id),
                    stage_id: None,
                    owner_id: None,
                    expected_close_date: None,
                },
            )
            .await?;
        if let Some(target) = pipeline.pipeline.stages.iter().find(|s| s.name == stage) {
            let input = MoveInput {
                stage_id: target.id,
                position: None,
                lost_reason: (stage == "Closed Lost").then(|| "Chose a competitor".to_owned()),
                won_reason: (stage == "Closed Won").then(|| "Best fit".to_owned()),
            };
            services
                .sales
                .move_deal(actor, deal.deal.id, input, None)
                .await?;
        }
        services
            .sales
            .create_activity(
                actor,
                ActivityInput {
                    activity_type: "CALL".into(),
                    subject: format!("Discovery call with {first}"),
                    description: None,
                    metadata: None,
                    contact_id: Some(contact_id),
                    deal_id: Some(deal.deal.id),
                    due_at: None,
                    assignee_id: None,
                    occurred_at: None,
                },
            )
            .await?;
    }
    Ok(())
}
