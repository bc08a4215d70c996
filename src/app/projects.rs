//! Looking up an omitted `project_id` from the region name through IAM
//! (`GET /v3/projects?name={region}`, signed), once per region, endpoint and access
//! key; the answer is cached for reloads.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::auth::provider::CredentialProvider;
use crate::config::{LookupRequest, ProjectLookup};
use crate::ids::ProjectId;
use crate::ims::ImsClient;
use crate::render::SelfMetrics;

/// (region, IAM endpoint, access key ID)
type CacheKey = (String, String, String);

pub struct ProjectResolver {
    metrics: Arc<SelfMetrics>,
    cache: Mutex<HashMap<CacheKey, ProjectId>>,
}

impl ProjectResolver {
    pub fn new(metrics: Arc<SelfMetrics>) -> Self {
        ProjectResolver {
            metrics,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn resolve(&self, req: &LookupRequest) -> Result<ProjectId, String> {
        // A provider of its own: the plan that runs the config is built after this.
        let credentials = CredentialProvider::new(&req.credentials)?;
        if credentials.current().is_none() {
            credentials.refresh().await?;
        }
        let ak = credentials
            .current()
            .map(|c| c.access_key_id.clone())
            .unwrap_or_default();
        let key = (req.region.clone(), req.iam_endpoint.to_string(), ak);
        if let Some(id) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(id.clone());
        }
        let client =
            ImsClient::new(&req.client, self.metrics.clone()).map_err(|e| e.to_string())?;
        let found = client
            .lookup_projects(&req.iam_endpoint, &req.region, &credentials)
            .await
            .map_err(|e| format!("cannot look it up through IAM at {}: {e}", req.iam_endpoint))?;
        let named: Vec<&(String, String)> = found
            .iter()
            .filter(|(_, name)| name == &req.region)
            .collect();
        let id = match named.as_slice() {
            [(id, _)] => ProjectId::parse(id)
                .map_err(|e| format!("IAM returned a project ID that is not valid: {e}"))?,
            [] => {
                return Err(format!(
                    "IAM at {} shows these credentials no project named {}; set project_id",
                    req.iam_endpoint, req.region
                ))
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|(id, _)| id.as_str()).collect();
                return Err(format!(
                    "{} projects are named {}: {}; set project_id to one of them",
                    many.len(),
                    req.region,
                    ids.join(", ")
                ));
            }
        };
        tracing::info!(key = %req.key, region = %req.region, project_id = %id, "looked up project ID through IAM");
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, id.clone());
        Ok(id)
    }
}

impl ProjectLookup for ProjectResolver {
    fn lookup<'a>(
        &'a self,
        request: &'a LookupRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ProjectId, String>> + Send + 'a>> {
        Box::pin(self.resolve(request))
    }
}
