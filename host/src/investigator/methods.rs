//! Authentication methods as the contract names them: from the methods API's
//! `@odata.type`, or from the registration report's `methodsRegistered`, and
//! which of them can answer an MFA prompt.

use latchkey_policy::AuthMethod;

/// The contract's kind of a method listed by
/// `GET /users/{id}/authentication/methods`; `None` for the password, which
/// the contract leaves out ("besides the password").
pub(super) fn from_odata_type(odata_type: &str) -> Option<AuthMethod> {
    let name = odata_type
        .trim_start_matches('#')
        .trim_start_matches("microsoft.graph.");
    Some(match name {
        "passwordAuthenticationMethod" => return None,
        "microsoftAuthenticatorAuthenticationMethod" => AuthMethod::MicrosoftAuthenticator,
        "phoneAuthenticationMethod" => AuthMethod::Phone,
        "emailAuthenticationMethod" => AuthMethod::Email,
        "fido2AuthenticationMethod" => AuthMethod::Fido2,
        // The contract's software-oath covers hardware tokens too.
        "softwareOathAuthenticationMethod" | "hardwareOathAuthenticationMethod" => {
            AuthMethod::SoftwareOath
        }
        "windowsHelloForBusinessAuthenticationMethod" => AuthMethod::WindowsHello,
        "temporaryAccessPassAuthenticationMethod" => AuthMethod::TemporaryAccessPass,
        // Platform credentials, certificates, QR code PINs, what comes next.
        _ => AuthMethod::Other,
    })
}

/// The contract's kind of a `methodsRegistered` entry of
/// `userRegistrationDetails`.
pub(super) fn from_registration(name: &str) -> AuthMethod {
    match name {
        "microsoftAuthenticatorPush" | "microsoftAuthenticatorPasswordless" => {
            AuthMethod::MicrosoftAuthenticator
        }
        "mobilePhone" | "alternateMobilePhone" | "officePhone" => AuthMethod::Phone,
        "email" => AuthMethod::Email,
        "fido2SecurityKey" | "passKeyDeviceBound" | "passKeyDeviceBoundAuthenticator" => {
            AuthMethod::Fido2
        }
        "softwareOneTimePasscode" | "hardwareOneTimePasscode" => AuthMethod::SoftwareOath,
        "windowsHelloForBusiness" | "passKeyDeviceBoundWindowsHello" => AuthMethod::WindowsHello,
        "temporaryAccessPass" => AuthMethod::TemporaryAccessPass,
        _ => AuthMethod::Other,
    }
}

/// Whether a method can answer an MFA prompt: what Entra's `isMfaCapable`
/// means, for when the registration report cannot be read. An email address
/// only serves password reset; a Temporary Access Pass is for registering a
/// method, not for proving one.
pub(super) fn answers_mfa(method: AuthMethod) -> bool {
    matches!(
        method,
        AuthMethod::MicrosoftAuthenticator
            | AuthMethod::Phone
            | AuthMethod::Fido2
            | AuthMethod::SoftwareOath
            | AuthMethod::WindowsHello
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_types_map_to_the_contract_and_the_password_is_left_out() {
        assert_eq!(
            from_odata_type("#microsoft.graph.passwordAuthenticationMethod"),
            None
        );
        assert_eq!(
            from_odata_type("#microsoft.graph.microsoftAuthenticatorAuthenticationMethod"),
            Some(AuthMethod::MicrosoftAuthenticator)
        );
        assert_eq!(
            from_odata_type("#microsoft.graph.emailAuthenticationMethod"),
            Some(AuthMethod::Email)
        );
        assert_eq!(
            from_odata_type("#microsoft.graph.hardwareOathAuthenticationMethod"),
            Some(AuthMethod::SoftwareOath)
        );
        assert_eq!(
            from_odata_type("#microsoft.graph.x509CertificateAuthenticationMethod"),
            Some(AuthMethod::Other)
        );
        assert_eq!(from_registration("officePhone"), AuthMethod::Phone);
        assert_eq!(from_registration("securityQuestion"), AuthMethod::Other);
    }

    #[test]
    fn email_and_passes_do_not_make_an_account_mfa_capable() {
        assert!(!answers_mfa(AuthMethod::Email));
        assert!(!answers_mfa(AuthMethod::TemporaryAccessPass));
        assert!(!answers_mfa(AuthMethod::Other));
        assert!(answers_mfa(AuthMethod::Phone));
    }
}
